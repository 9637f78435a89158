"""``p2pvision data semisynthetic | export | sheet | inspect``: generate, export and inspect data sets."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from p2pvision.cli.arguments import non_negative_int, object_scale, output_folder, png_file, positive_int
from p2pvision.data.local import FORMATS


def _add_semisynthetic_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("built-in semi-synthetic data set")
    group.add_argument("--task", choices=["object", "scene"], default="object", help="labelling (default: object)")
    group.add_argument("--size", type=positive_int, default=64, help="image side in pixels (default: 64; 224 works)")
    group.add_argument("--n", type=positive_int, default=10000, help="images in all splits, 80/10/10 (default: 10000)")
    for split in ("train", "val", "test"):
        group.add_argument(
            f"--n-{split}", type=positive_int, default=None, help=f"images in the {split} split (overrides --n)"
        )
    group.add_argument(
        "--scale", type=object_scale, nargs=2, default=(1 / math.sqrt(3), 1 / math.sqrt(2)), metavar=("LOW", "HIGH"),
        help="object side / image side range (default: 0.577 0.707, as in BAM)",
    )  # fmt: skip
    group.add_argument(
        "--objects", choices=["mnist", "fashion"], default="mnist",
        help="object source: bundled MNIST digits (default) or Fashion-MNIST (apt-get install dataset-fashion-mnist)",
    )  # fmt: skip
    group.add_argument("--seed", type=non_negative_int, default=0)


def _semisynthetic_config(args: argparse.Namespace):
    from p2pvision.data.semisynthetic import SemiSyntheticConfig
    from p2pvision.errors import ConfigError

    if args.scale[0] > args.scale[1]:
        raise ConfigError(f"--scale {args.scale[0]} {args.scale[1]}: LOW must not exceed HIGH")
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
    from p2pvision.data.export import export_semisynthetic

    config = _semisynthetic_config(args)
    out, count = export_semisynthetic(
        config, args.task, args.out, root=args.root, overwrite=args.overwrite, progress=not args.quiet
    )
    print(f"exported {count} images with masks to {out}")
    return 0


def cmd_data_sheet(args: argparse.Namespace) -> int:
    from p2pvision.report.contact_sheet import write_contact_sheet

    config = _semisynthetic_config(args)
    path = write_contact_sheet(config, args.task, args.split, Path(args.out), count=args.count, root=args.root)
    print(f"contact sheet: {path}")
    return 0


# The formats each option of 'data inspect' applies to (given to another format, it would be ignored silently).
_INSPECT_OPTIONS = {
    "--split": [name for name in FORMATS if name != "imagefolder"],  # an image folder is one split
    "--masks": ["imagefolder"],
    "--variant": ["imagenet9"],
    "--task": ["bam"],
}


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from p2pvision.data.local import open_local_dataset
    from p2pvision.data.summary import summarise_dataset
    from p2pvision.errors import ConfigError

    given = {"--split": args.split, "--masks": args.masks, "--variant": args.variant, "--task": args.task}
    for option, value in given.items():
        if value is not None and args.format not in _INSPECT_OPTIONS[option]:
            raise ConfigError(f"{option} {value} does not apply to the {args.format} format (only to "
                              f"{', '.join(_INSPECT_OPTIONS[option])})")  # fmt: skip
    variant, task = args.variant or "original", args.task or "obj"
    dataset = open_local_dataset(args.format, args.root, args.split, masks=args.masks, variant=variant, task=task)
    summary = summarise_dataset(dataset, args.sample)
    print(f"{args.format} data set at {args.root}: {summary.size} images, {len(summary.classes)} classes, "
          f"masks: {'yes' if summary.has_masks else 'no'}")  # fmt: skip
    for name, count in zip(summary.classes, summary.counts):
        print(f"  {count:>7}  {name}")
    print(f"image size (H x W) over {len(summary.samples)} samples: min {summary.min_size}, max {summary.max_size}")
    if summary.mask_share is not None:
        mean, std = summary.mask_share
        print(f"mean mask area share: {mean:.3f} ± {std:.3f}")
    if args.sheet:
        from p2pvision.report.contact_sheet import write_sample_sheet

        path = write_sample_sheet(summary.samples, summary.classes, summary.has_masks, args.sheet)
        print(f"contact sheet: {path}")
    return 0


def add_data_command(commands: argparse._SubParsersAction) -> None:
    """Add ``data`` with its actions ``semisynthetic``, ``export``, ``sheet`` and ``inspect``."""
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
    export.add_argument("--out", required=True, type=output_folder, help="folder to write (must be empty or absent)")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    export.set_defaults(run=cmd_data_export)
    sheet = data_commands.add_parser(
        "sheet", parents=[common], help="contact sheet PNG with masks and region boundaries"
    )
    sheet.add_argument("--split", choices=["train", "val", "test"], default="train")
    sheet.add_argument("--count", type=positive_int, default=32, help="images on the sheet (default: 32)")
    sheet.add_argument("--out", default="contact_sheet.png", type=png_file, help="PNG file to write")
    sheet.set_defaults(run=cmd_data_sheet)

    inspect = data_commands.add_parser("inspect", help="summarise a local data set (counts, sizes, masks)")
    inspect.add_argument("format", choices=FORMATS, help="layout of the folder")
    inspect.add_argument("root", help="the data set's folder")
    inspect.add_argument("--split", default=None, help="split to read (default: the format's evaluation split)")
    inspect.add_argument("--masks", default=None, help="masks folder (imagefolder format)")
    inspect.add_argument("--variant", default=None, help="ImageNet-9 variant (default: original)")
    inspect.add_argument("--task", choices=["obj", "scene"], default=None, help="BAM labelling (default: obj)")
    inspect.add_argument("--sample", type=positive_int, default=200, help="images read for size and mask statistics")
    inspect.add_argument(
        "--sheet", default=None, type=png_file, help="also write a contact sheet PNG of up to 32 samples"
    )
    inspect.set_defaults(run=cmd_data_inspect)
