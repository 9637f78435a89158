"""The ``p2pvision`` command: thin wrappers that parse arguments, call the library and say where results went."""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from p2pvision.benchmark.cli import add_benchmark_command
from p2pvision.cache import atomic_path, write_json
from p2pvision.data.local import FORMATS
from p2pvision.errors import P2PVisionError
from p2pvision.explain.cli import add_explain_command
from p2pvision.inv.cli import add_inv_commands
from p2pvision.label.cli import add_label_commands


def _add_semisynthetic_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("built-in semi-synthetic data set")
    group.add_argument("--task", choices=["object", "scene"], default="object", help="labelling (default: object)")
    group.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64; 224 works)")
    group.add_argument("--n", type=int, default=10000, help="images in all splits, 80/10/10 (default: 10000)")
    for split in ("train", "val", "test"):
        group.add_argument(f"--n-{split}", type=int, default=None, help=f"images in the {split} split (overrides --n)")
    group.add_argument(
        "--scale", type=float, nargs=2, default=(1 / math.sqrt(3), 1 / math.sqrt(2)), metavar=("LOW", "HIGH"),
        help="object side / image side range (default: 0.577 0.707, as in BAM)",
    )  # fmt: skip
    group.add_argument(
        "--objects", choices=["mnist", "fashion"], default="mnist",
        help="object source: bundled MNIST digits (default) or Fashion-MNIST (apt-get install dataset-fashion-mnist)",
    )  # fmt: skip
    group.add_argument("--seed", type=int, default=0)


def _semisynthetic_config(args: argparse.Namespace):
    from p2pvision.data.semisynthetic import SemiSyntheticConfig

    counts = {"train": int(args.n * 0.8), "val": int(args.n * 0.1)}
    counts["test"] = args.n - counts["train"] - counts["val"]
    for split in counts:
        override = getattr(args, f"n_{split}")
        if override is not None:
            counts[split] = override
    return SemiSyntheticConfig(
        image_size=args.size, n_train=counts["train"], n_val=counts["val"], n_test=counts["test"],
        object_scale=tuple(args.scale), objects=args.objects, seed=args.seed,
    )  # fmt: skip


def cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import timm
    import torch
    import torchvision

    from p2pvision import __version__, _torchvision_compat
    from p2pvision.cache import cache_dir
    from p2pvision.models.backbones import WEIGHT_PACKAGES
    from p2pvision.regions.partition import fast_slic_available

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    packages = []
    for name, package in WEIGHT_PACKAGES.items():
        try:
            package.path()
            packages.append(name)
        except P2PVisionError:
            pass
    rows = [
        ("p2pvision", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        (
            "torchvision",
            torchvision.__version__ + (" (CPU shim for compiled ops)" if _torchvision_compat.patched() else ""),
        ),
        ("timm", timm.__version__),
        ("numpy", numpy.__version__),
        ("device", device),
        ("cpu threads", str(torch.get_num_threads())),
        ("cache", str(cache_dir())),
        ("offline weights", ", ".join(packages) or "none installed"),
        ("fast-slic", "installed" if fast_slic_available() else "not installed (scikit-image SLIC is used)"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_data_semisynthetic(args: argparse.Namespace) -> int:
    from p2pvision.data.semisynthetic import build_semisynthetic

    config = _semisynthetic_config(args)
    start = time.perf_counter()
    data = build_semisynthetic(config, root=args.root, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    classes = data.object_classes if args.task == "object" else data.scene_classes
    print(
        f"semi-synthetic data set ({args.task} task, {config.image_size} px, {len(classes)} classes) "
        f"ready in {elapsed:.2f} s"
    )
    print(f"  folder: {data.root}")
    for split in ("train", "val", "test"):
        stats = data.stats[split]
        print(
            f"  {split:<5} {config.count(split):>6} images, mean object area share "
            f"{stats['object_area_share']:.3f} ± {stats['object_area_share_std']:.3f}"
        )
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from p2pvision.data.builtin import SemiSyntheticDataset
    from p2pvision.data.export import export_image_folder

    config = _semisynthetic_config(args)
    splits = {
        s: SemiSyntheticDataset(s, args.task, config, root=args.root, progress=not args.quiet)
        for s in ("train", "val", "test")
    }
    info = {
        "dataset": "p2pvision semi-synthetic",
        "task": args.task,
        "config": asdict(config),
        "classes": splits["train"].classes,
        "relevant_area_share": {split: dataset.relevant_area_share for split, dataset in splits.items()},
    }
    out = export_image_folder(splits, args.out, info, overwrite=args.overwrite, progress=not args.quiet)
    print(f"exported {sum(len(d) for d in splits.values())} images with masks to {out}")
    return 0


def cmd_data_sheet(args: argparse.Namespace) -> int:
    from p2pvision.demo import write_contact_sheet

    config = _semisynthetic_config(args)
    path = write_contact_sheet(config, args.task, args.split, Path(args.out), count=args.count, root=args.root)
    print(f"contact sheet: {path}")
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from p2pvision.data.local import dataset_labels, open_local_dataset
    from p2pvision.data.transforms import JointResize
    from p2pvision.report.contact_sheet import contact_sheet

    dataset = open_local_dataset(
        args.format, args.root, args.split, masks=args.masks, variant=args.variant, task=args.task
    )
    labels = dataset_labels(dataset)
    counts = np.bincount(labels, minlength=len(dataset.classes))
    print(f"{args.format} data set at {args.root}: {len(dataset)} images, {len(dataset.classes)} classes, "
          f"masks: {'yes' if dataset.has_masks else 'no'}")  # fmt: skip
    for name, count in zip(dataset.classes, counts):
        print(f"  {count:>7}  {name}")
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(dataset), size=min(args.sample, len(dataset)), replace=False).tolist())
    samples = [dataset[i] for i in picked]
    sizes = np.array([tuple(s["image"].shape[1:]) for s in samples])
    print(f"image size (H x W) over {len(samples)} samples: min {sizes.min(0).tolist()}, max {sizes.max(0).tolist()}")
    if dataset.has_masks:
        shares = [float(s["mask"].float().mean()) for s in samples]
        print(f"mean mask area share: {np.mean(shares):.3f} ± {np.std(shares):.3f}")
    if args.sheet:
        resize = JointResize((96, 96))
        shown = [resize(s) for s in samples[:32]]
        images = np.stack([(s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for s in shown])
        masks = np.stack([s["mask"].numpy() for s in shown]) if dataset.has_masks else None
        captions = [dataset.classes[s["label"]] for s in shown]
        with atomic_path(args.sheet) as tmp:
            contact_sheet(images, masks, None, captions, scale=1).save(tmp)
        print(f"contact sheet: {Path(args.sheet).resolve()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from p2pvision.train.experiment import load_experiment
    from p2pvision.train.run import run_training

    config = load_experiment(args.config, args.overrides)
    out = Path(args.out or Path("results") / config.name)
    model = run_training(config, out, resume=args.resume)
    print(f"trained {config.train.mode} '{config.name}': model {model.resolve()}")
    print(f"logs and metrics: {(out / 'logs' / 'metrics.csv').resolve()}, {(out / 'metrics.json').resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from p2pvision.models.p2p.checkpoint import load_p2p
    from p2pvision.predict import predict_files

    model = load_p2p(args.checkpoint)
    records = predict_files(model, args.images, args.out, delta=args.delta, tau=args.tau)
    print(f"{'file':<32} {'class':<16} {'conf':>6} {'tau':>5} {'kept':>6}")
    for record in records:
        name = Path(record["file"]).name[:32]
        print(
            f"{name:<32} {record['class'][:16]:<16} {record['confidence']:>6.3f} {record['tau']:>5.2f} "
            f"{record['kept_fraction']:>6.1%}"
        )
    print(f"figures and predictions.json: {Path(args.out).resolve()}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from p2pvision.metrics.p2p_evaluation import HIGHER_IS_BETTER, evaluate_p2p
    from p2pvision.models.p2p.checkpoint import load_p2p, read_checkpoint_config
    from p2pvision.regions.partition import make_partitioner
    from p2pvision.train.data import build_stage
    from p2pvision.train.experiment import apply_overrides, experiment_from_dict

    _, meta = read_checkpoint_config(args.checkpoint)
    if "experiment" not in meta and not args.data:
        raise P2PVisionError(f"'{args.checkpoint}' records no training data: name it with --data source=... root=...")
    experiment = apply_overrides(meta.get("experiment", {}), [f"data.{item}" for item in args.data])
    config = experiment_from_dict(experiment, str(args.checkpoint))
    model = load_p2p(args.checkpoint)
    dataset = build_stage(config.data, args.split, make_partitioner(**model.config.partition))
    deltas = tuple(args.delta)
    report = evaluate_p2p(model, dataset, deltas, batch_size=args.batch_size)
    keys = [key for key in HIGHER_IS_BETTER if key in report[str(deltas[0])]]
    print(f"{args.split} split, {report[str(deltas[0])]['images']} images; arrows: direction of better")
    print("delta  " + " ".join(f"{key + ('↑' if HIGHER_IS_BETTER[key] else '↓'):>13}" for key in keys))
    for delta in deltas:
        print(f"{delta:<6} " + " ".join(f"{report[str(delta)][key]:>13.4f}" for key in keys))
    out = Path(args.out)
    write_json(out / "evaluation.json", {"checkpoint": str(args.checkpoint), "split": args.split, "report": report})
    with atomic_path(out / "evaluation.csv") as tmp:
        tmp.write_text(
            "delta,"
            + ",".join(keys)
            + "\n"
            + "".join(
                f"{delta}," + ",".join(f"{report[str(delta)][key]:.6f}" for key in keys) + "\n" for delta in deltas
            )
        )
    print(f"tables: {(out / 'evaluation.json').resolve()}, {(out / 'evaluation.csv').resolve()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from p2pvision.demo import run_demo

    run_demo(Path(args.out), args.config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from p2pvision import __version__

    parser = argparse.ArgumentParser(prog="p2pvision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"p2pvision {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print versions, device and cache paths")
    info.set_defaults(run=cmd_info)

    data = commands.add_parser("data", help="generate, export and inspect data sets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    _add_semisynthetic_arguments(common)
    common.add_argument("--root", default=None, help="folder for generated data (default: the p2pvision cache)")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    generate = data_commands.add_parser(
        "semisynthetic", parents=[common], help="generate (or reuse) the built-in data set"
    )
    generate.set_defaults(run=cmd_data_semisynthetic)
    export = data_commands.add_parser("export", parents=[common], help="export as ImageFolder + masks folder")
    export.add_argument("--out", required=True, help="folder to write (must be empty or absent)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    export.set_defaults(run=cmd_data_export)
    sheet = data_commands.add_parser(
        "sheet", parents=[common], help="contact sheet PNG with masks and region boundaries"
    )
    sheet.add_argument("--split", choices=["train", "val", "test"], default="train")
    sheet.add_argument("--count", type=int, default=32, help="images on the sheet (default: 32)")
    sheet.add_argument("--out", default="contact_sheet.png", help="PNG file to write")
    sheet.set_defaults(run=cmd_data_sheet)

    inspect = data_commands.add_parser("inspect", help="summarise a local data set (counts, sizes, masks)")
    inspect.add_argument("format", choices=FORMATS, help="layout of the folder")
    inspect.add_argument("root", help="the data set's folder")
    inspect.add_argument("--split", default=None, help="split to read (default: the format's evaluation split)")
    inspect.add_argument("--masks", default=None, help="masks folder (imagefolder format)")
    inspect.add_argument("--variant", default="original", help="ImageNet-9 variant (default: original)")
    inspect.add_argument("--task", choices=["obj", "scene"], default="obj", help="BAM labelling (default: obj)")
    inspect.add_argument("--sample", type=int, default=200, help="images read for size and mask statistics")
    inspect.add_argument("--sheet", default=None, help="also write a contact sheet PNG of up to 32 samples")
    inspect.set_defaults(run=cmd_data_inspect)

    train = commands.add_parser("train", help="train P2P (or the full-image baseline) from a YAML config")
    train.add_argument("--config", default=None, help="experiment YAML (see configs/); default: built-in defaults")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.epochs=3")
    train.add_argument("--out", default=None, help="output folder (default: results/<name>)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.set_defaults(run=cmd_train)

    add_explain_command(commands)
    add_benchmark_command(commands)
    add_inv_commands(commands)
    add_label_commands(commands)

    predict = commands.add_parser("predict", help="classify image files with a P2P checkpoint and show what it kept")
    predict.add_argument("checkpoint", help="a P2P model folder (model.safetensors + config.json)")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--out", default="results/predictions", help="folder for figures and predictions.json")
    predict.add_argument("--delta", type=float, default=None, help="certainty for the tau search (default: model's)")
    predict.add_argument("--tau", type=float, default=None, help="a fixed tau instead of the search")
    predict.set_defaults(run=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="accuracy, sparsity, localisation, faithfulness of a checkpoint")
    evaluate.add_argument("checkpoint", help="a P2P model folder")
    evaluate.add_argument("--data", nargs="*", default=[], metavar="KEY=VALUE", help="data overrides, e.g. root=DIR")
    evaluate.add_argument("--split", choices=["train", "val", "test"], default="test")
    evaluate.add_argument("--delta", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99])
    evaluate.add_argument("--batch-size", type=int, default=64)
    evaluate.add_argument("--out", default="results/evaluation", help="folder for evaluation.json and .csv")
    evaluate.set_defaults(run=cmd_evaluate)

    demo = commands.add_parser("demo", help="run the main job on the built-in data and say where results are")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--config", default="demo", help="experiment to run (default: the shipped 'demo')")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``p2pvision`` console script. User errors print one line and exit with code 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except P2PVisionError as exc:
        print(f"p2pvision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("p2pvision: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
