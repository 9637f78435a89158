"""``p2pvision inv explain | global``: INV cluster maps of images, and global explanations from labels.

Wired into the main parser with ``add_inv_commands(subparsers)``; nothing heavy is imported to build it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from p2pvision.cli.arguments import non_negative_int, output_folder
from p2pvision.cli.explain import add_model_arguments
from p2pvision.errors import P2PVisionError


def add_inv_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``inv`` with its actions ``explain`` and ``global``."""
    inv = subparsers.add_parser("inv", help="INV: layer-wise cluster maps of a CNN and global explanations")
    actions = inv.add_subparsers(dest="inv_command", required=True, metavar="ACTION")

    explain = actions.add_parser(
        "explain",
        help="cluster maps of images at chosen layers (folders for 'p2pvision label serve')",
        description="For each image: guided-gradient channel weights at each layer, channel pruning, PCA + t-SNE "
        "embedding of the channel maps, Ward clustering (cluster count by silhouette), cluster pruning and "
        "cluster maps; writes a folder per image with an overview figure, the maps and the partial-reveal images "
        "people label.",
    )
    explain.add_argument("images", nargs="+", help="image files")
    add_model_arguments(explain)
    explain.add_argument(
        "--layers", nargs="+", default=None, metavar="LAYER",
        help="module names of the layers (default: the last three stages, e.g. blocks.2 blocks.4 blocks.6)",
    )  # fmt: skip
    explain.add_argument(
        "--embedding", choices=["tsne", "pca"], default="tsne", help="channel embedding (default: tsne)"
    )
    explain.add_argument("--seed", type=non_negative_int, default=0, help="seed of PCA and t-SNE (default: 0)")
    explain.add_argument(
        "--out", default="results/inv/maps", type=output_folder, help="output folder (default: results/inv/maps)"
    )
    explain.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    explain.set_defaults(run=run_explain)

    glob = actions.add_parser(
        "global",
        help="global explanations per class across layers from labelled cluster maps",
        description="Group the labels people gave (Sentence-BERT, offline), score them per cluster map, merge "
        "cluster maps that share a best label and aggregate per class and layer; writes global.json, a plot per "
        "class and index.html.",
    )
    glob.add_argument("runs", nargs="+", help="cluster-map folders from 'p2pvision inv explain' (or their parents)")
    source = glob.add_mutually_exclusive_group()
    source.add_argument("--db", default=None, help="answers database of 'p2pvision label serve'")
    source.add_argument("--answers", default=None, help="answers CSV from 'p2pvision label export'")
    glob.add_argument(
        "--out", default="results/inv/global", type=output_folder, help="output folder (default: results/inv/global)"
    )
    glob.set_defaults(run=run_global)


def _output_names(paths: list[Path]) -> list[str]:
    used: dict[str, int] = {}
    names = []
    for path in paths:
        count = used.get(path.stem, 0)
        used[path.stem] = count + 1
        names.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return names


def run_explain(args: argparse.Namespace) -> int:
    from p2pvision.cli.inputs import all_images_missing, check_checkpoint_exists, report_failures

    missing = all_images_missing(args.images)  # before torch loads
    if missing:
        return report_failures(missing, len(args.images))
    if args.checkpoint is not None:
        check_checkpoint_exists(args.checkpoint)

    from p2pvision.cli.explain import choose_device, load_model_from_args
    from p2pvision.inv.clustermaps import InvConfig, cluster_maps
    from p2pvision.inv.runs import save_cluster_maps
    from p2pvision.io import load_image

    config = InvConfig(embedding=args.embedding, seed=args.seed)
    device = choose_device(args.device)
    model, name = load_model_from_args(args, device)
    paths = [Path(image) for image in args.images]
    out = Path(args.out)
    print(f"INV cluster maps of {len(paths)} image(s) on {name} ({device}); results go to {out}")
    failures: list[tuple[str, str]] = []
    for number, (path, stem) in enumerate(zip(paths, _output_names(paths)), start=1):
        started = time.perf_counter()
        try:
            image = model.preprocess(load_image(path))
        except P2PVisionError as exc:  # this file is skipped; the others get their output
            failures.append((str(path), str(exc)))
            continue
        result = cluster_maps(model, image, args.target, args.layers, config)
        folder = save_cluster_maps(result, out / stem, model.class_names, str(path), name)
        layers = ", ".join(f"{x.layer}: {len(x.kept_clusters)}/{len(x.clusters)}" for x in result.layers)
        print(
            f"[{number}/{len(paths)}] {path.name}: {result.target_name} (p={result.probability:.2f}); kept/all "
            f"clusters {layers}; {time.perf_counter() - started:.1f} s -> {folder / 'overview.png'}"
        )
    if len(failures) < len(paths):
        print(f"label them with: p2pvision label serve {out}")
    return report_failures(failures, len(paths))


def run_global(args: argparse.Namespace) -> int:
    from p2pvision.cli.label import DEFAULT_DB
    from p2pvision.errors import ConfigError, path_problem
    from p2pvision.inv.global_explanation import build_global_explanation, write_global_explanation
    from p2pvision.inv.runs import find_runs
    from p2pvision.label.store import AnswerStore, read_answers_csv

    runs = find_runs(args.runs)
    if args.answers is not None:
        rows, problems = read_answers_csv(args.answers)
        for problem in problems[:10]:
            print(f"skipped {problem}")
        answers = [answer for _, answer in rows]
    else:
        db = Path(args.db or DEFAULT_DB)
        unusable = path_problem(db)
        if unusable is not None:
            raise ConfigError(f"answers database '{db}' {unusable}: pass --db or --answers")
        with AnswerStore(db) as store:
            answers = store.answers()
    started = time.perf_counter()
    explanation = build_global_explanation(runs, answers)
    paths = write_global_explanation(explanation, runs, args.out)
    print(
        f"{len(runs)} images, {explanation.answers_used} answers used, {len(explanation.groups.names)} label groups, "
        f"{len(explanation.merged)} merged cluster maps ({explanation.unlabelled_maps} without answers); "
        f"{time.perf_counter() - started:.1f} s"
    )
    for class_name in sorted(explanation.scores):
        print(f"  {class_name}: top labels {', '.join(explanation.top_labels(class_name, 5)) or '-'}")
    print(f"global explanation: {paths['html'].resolve()} (data: {paths['json'].resolve()})")
    return 0
