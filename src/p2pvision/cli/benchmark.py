"""``p2pvision benchmark``: run a benchmark config; wired into the main parser with ``add_benchmark_command``."""

from __future__ import annotations

import argparse
from pathlib import Path

from p2pvision.cli.arguments import output_folder


def add_benchmark_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` subcommand (building the parser imports nothing heavy)."""
    parser = subparsers.add_parser(
        "benchmark",
        help="methods x data sets x seeds -> tables (CSV, Markdown) and a self-contained HTML report",
        description="Evaluate every method of a benchmark config on every data set for every seed (cells done "
        "earlier are reused), then write results.csv, results.md, results.json and report.html.",
    )
    parser.add_argument("--config", required=True, help="benchmark YAML, or a shipped name (cpu, cifar10, ...)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. seeds=[0] batch_size=16")
    parser.add_argument(
        "--out", default=None, type=output_folder, help="output folder (default: results/benchmark-<name>)"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help="only these data sets (e.g. one per process, "
        "1 thread each; run again without it to put every data set in the tables and report)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=run_benchmark_command)


def run_benchmark_command(args: argparse.Namespace) -> int:
    from p2pvision.benchmark.config import load_benchmark
    from p2pvision.benchmark.engine import run_benchmark

    config = load_benchmark(args.config, args.overrides)
    if args.datasets:
        config = config.only(args.datasets)
    out = Path(args.out or Path("results") / f"benchmark-{config.name}")
    print(f"benchmark '{config.name}': {config.cell_count()} cells ({len(config.datasets)} data sets, "
          f"{len(config.methods)} methods, seeds {config.seeds}) -> {out}")  # fmt: skip
    results = run_benchmark(config, out, progress=not args.quiet)
    print(f"finished in {results['seconds']:.0f} s")
    for name in ("results.md", "results.csv", "report.html"):
        print(f"  {name:<12} {(out / name).resolve()}")
    return 0
