"""``p2pvision train | predict | evaluate | demo``: train P2P, use and evaluate a checkpoint, run the demo."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from p2pvision.cli.arguments import budget, certainty, output_folder, positive_int
from p2pvision.errors import P2PVisionError


def cmd_train(args: argparse.Namespace) -> int:
    from p2pvision.train.inpainter import KIND, config_kind

    if config_kind(args.config) == KIND:
        return _train_inpainter(args)
    from p2pvision.train.experiment import load_experiment
    from p2pvision.train.run import run_training

    config = load_experiment(args.config, args.overrides)
    out = Path(args.out or Path("results") / config.name)
    model = run_training(config, out, resume=args.resume)
    print(f"trained {config.train.mode} '{config.name}': model {model.resolve()}")
    print(f"logs and metrics: {(out / 'logs' / 'metrics.csv').resolve()}, {(out / 'metrics.json').resolve()}")
    return 0


def _train_inpainter(args: argparse.Namespace) -> int:
    from p2pvision.train.inpainter import HOLE_KINDS, load_inpainter_experiment, train_inpainter

    config = load_inpainter_experiment(args.config, args.overrides)
    out = Path(args.out or Path("results") / config.name)
    model, metrics = train_inpainter(config, out, resume=args.resume)
    print(f"trained inpainter '{config.name}' in {metrics['fit_seconds']:.0f} s: model {model.resolve()}")
    test = metrics["test"]["l1_hole"]
    print(f"L1 inside the hole on {metrics['test']['images']} held-out crops (lower is better):")
    print(f"{'fill':<12} {'all':>7} " + " ".join(f"{kind:>11}" for kind in HOLE_KINDS))
    for name, values in test.items():
        print(f"{name:<12} {values['all']:>7.4f} " + " ".join(f"{values.get(kind, float('nan')):>11.4f}"
                                                         for kind in HOLE_KINDS))  # fmt: skip
    print(f"use it with: p2pvision explain ... --removal learned:{model}")
    print(f"logs and metrics: {(out / 'logs' / 'metrics.csv').resolve()}, {(out / 'metrics.json').resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from p2pvision.cli.inputs import all_images_missing, check_checkpoint_exists, report_failures

    check_checkpoint_exists(args.checkpoint)  # before torch loads
    missing = all_images_missing(args.images)
    if missing:
        return report_failures(missing, len(args.images))

    from p2pvision.models.p2p.checkpoint import load_p2p
    from p2pvision.predict import predict_files

    model = load_p2p(args.checkpoint)
    records, failures = predict_files(model, args.images, args.out, delta=args.delta, tau=args.tau)
    if records:
        print(f"{'file':<32} {'class':<16} {'conf':>6} {'tau':>5} {'kept':>6}")
    for record in records:
        name = Path(record["file"]).name[:32]
        print(
            f"{name:<32} {record['class'][:16]:<16} {record['confidence']:>6.3f} {record['tau']:>5.2f} "
            f"{record['kept_fraction']:>6.1%}"
        )
    if records:
        print(f"figures and predictions.json: {Path(args.out).resolve()}")
    return report_failures(failures, len(args.images))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from p2pvision.cli.inputs import check_checkpoint_exists

    if not args.delta and not args.tau:
        raise P2PVisionError("nothing to evaluate: give certainties (--delta 0.9 0.99) or budgets (--tau 0.1 0.2)")
    for checkpoint in [args.checkpoint, *args.compare]:
        check_checkpoint_exists(checkpoint)  # before torch loads

    from p2pvision.benchmark.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(args.checkpoint, args.out, args.split, tuple(args.delta), data=args.data,
                                 batch_size=args.batch_size, images=args.images, taus=tuple(args.tau),
                                 compare=args.compare)  # fmt: skip
    directions = report.pop("directions")
    first = next(iter(report.values()))
    keys = [key for key in directions if key in first]
    width = max(len("setting"), *(len(setting) for setting in report))
    print(f"{args.split} split, {first['images']} images; arrows: direction of better")
    print(f"{'setting':<{width}} " + " ".join(f"{key + ('↑' if directions[key] else '↓'):>13}" for key in keys))
    for setting, row in report.items():
        print(f"{setting:<{width}} " + " ".join(f"{row[key]:>13.4f}" for key in keys))
    out = Path(args.out).resolve()
    print(f"tables: {out / 'evaluation.json'}, {out / 'evaluation.csv'}; frontier plot: {out / 'frontier.png'}; "
          f"report: {out / 'report.html'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from p2pvision.demo import plan_demo, run_demo

    start = time.perf_counter()
    out = Path(args.out)
    plan = plan_demo(out, args.config)
    if plan.reuses_model:
        print(f"reusing the model trained earlier in {plan.model_dir} (delete {out} to train again)")
    else:
        warm, total = plan.config.train.warmup_epochs, plan.config.train.epochs
        print(f"training P2P on the semi-synthetic object task on the CPU: {warm} warm-up epochs of the classifier")
        print(f"on full images, then {total - warm} epochs of selector and classifier together...")
    result = run_demo(plan)
    print()
    print(result.table)
    print(f"{result.correct}/{result.images} demo images classified correctly; figures show what the classifier saw")
    print(f"finished in {time.perf_counter() - start:.0f} s. Results in {out.resolve()}:")
    print(f"  metrics:        {(out / 'metrics.md').resolve()} (and metrics.json)")
    print(f"  predictions:    {(out / 'predictions').resolve()} (PNG per image, predictions.json)")
    print(f"  model:          {plan.model_dir.resolve()}")
    print(f"  training logs:  {(plan.run / 'logs' / 'metrics.csv').resolve()}")
    print(f"  data samples:   {result.sheet.resolve()}")
    return 0


def add_train_command(commands: argparse._SubParsersAction) -> None:
    """Add ``train``."""
    train = commands.add_parser(
        "train", help="train P2P, a baseline or the learned inpainter (kind: inpainter) from a YAML config"
    )
    train.add_argument("--config", default=None, help="experiment YAML (see configs/); default: built-in defaults")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.epochs=3")
    train.add_argument("--out", default=None, type=output_folder, help="output folder (default: results/<name>)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.set_defaults(run=cmd_train)


def add_checkpoint_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``evaluate`` and ``demo``."""
    predict = commands.add_parser("predict", help="classify image files with a P2P checkpoint and show what it kept")
    predict.add_argument("checkpoint", help="a P2P model folder (model.safetensors + config.json)")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument(
        "--out", default="results/predictions", type=output_folder, help="folder for figures and predictions.json"
    )
    predict.add_argument(
        "--delta", type=certainty, default=None, help="certainty for the tau search (default: model's)"
    )
    predict.add_argument("--tau", type=budget, default=None, help="a fixed tau instead of the search")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="accuracy, sparsity, localisation, faithfulness of a checkpoint")
    evaluate.add_argument("checkpoint", help="a P2P model folder")
    evaluate.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE", help="data overrides, e.g. root=DIR")
    evaluate.add_argument("--split", choices=["train", "val", "test"], default="test")
    evaluate.add_argument("--delta", type=certainty, nargs="*", default=[0.8, 0.9, 0.95, 0.99],
                          help="certainties for the per-image tau search, one frontier point each")  # fmt: skip
    evaluate.add_argument("--tau", type=budget, nargs="*", default=[],
                          help="fixed budgets tau (no search), one frontier point each, e.g. 0.05 0.1 0.2")  # fmt: skip
    evaluate.add_argument("--compare", nargs="*", default=[], metavar="CHECKPOINT",
                          help="other P2P models of the same data (e.g. model.tau_conditioning=additive) on the same "
                               "settings and plot")  # fmt: skip
    evaluate.add_argument("--batch-size", type=positive_int, default=64)
    evaluate.add_argument(
        "--images", type=positive_int, default=None, help="evaluate the first N images of the split only"
    )
    evaluate.add_argument("--out", default="results/evaluation", type=output_folder,
                          help="folder for evaluation.json/.csv, the benchmark tables and report.html")  # fmt: skip
    evaluate.set_defaults(run=cmd_evaluate)

    demo = commands.add_parser("demo", help="run the main job on the built-in data and say where results are")
    demo.add_argument("--out", default="results/demo", type=output_folder, help="output folder (default: results/demo)")
    demo.add_argument("--config", default="demo", help="experiment to run (default: the shipped 'demo')")
    demo.set_defaults(run=cmd_demo)
