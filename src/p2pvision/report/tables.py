"""The results table of a benchmark as CSV (one row per data set, method and metric) and Markdown (one table per
data set: methods x metrics, ``mean ± std`` over seeds, the direction of better in every header)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from p2pvision.cache import atomic_path

COLUMNS = ("dataset", "method", "group", "metric", "higher_is_better", "mean", "std", "seeds")
GROUPS = ("prediction", "cost", "localisation", "faithfulness", "similarity", "stability across seeds")


def format_value(mean: float, std: float, seeds: int) -> str:
    """``mean ± std`` with 3 decimals (large values with fewer); '—' when undefined."""
    if mean is None or math.isnan(mean):
        return "—"
    digits = 3 if abs(mean) < 100 else 1
    return f"{mean:.{digits}f}" if seeds < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def pivot(rows: list[dict[str, Any]], dataset: str, group: str) -> tuple[list[str], list[str], dict]:
    """Methods and metric keys (first-seen order) and the rows by (method, metric) of one data set and group."""
    methods, metrics, cells = [], [], {}
    for row in rows:
        if row["dataset"] != dataset or row["group"] != group:
            continue
        if row["method"] not in methods:
            methods.append(row["method"])
        if row["metric"] not in metrics:
            metrics.append(row["metric"])
        cells[(row["method"], row["metric"])] = row
    return methods, metrics, cells


def groups_of(rows: list[dict[str, Any]], dataset: str) -> list[str]:
    """The groups of metrics one data set has rows in, in report order."""
    present = {row["group"] for row in rows if row["dataset"] == dataset}
    return [group for group in GROUPS if group in present] + sorted(present - set(GROUPS))


def directions_of(cells: dict[tuple[str, str], dict[str, Any]]) -> dict[str, bool]:
    return {metric: row["higher_is_better"] for (_, metric), row in cells.items()}


def markdown_tables(results: dict[str, Any]) -> str:
    rows = results["table"]
    parts = [f"# Benchmark '{results['name']}'\n", "Mean ± sample standard deviation over the seeds of each data "
             "set (seed stability: over the pairs of seeds; a value without ± comes from one seed); arrows give the "
             "direction of better.\n"]  # fmt: skip
    for dataset, info in results["datasets"].items():
        count = next((c["images"] for c in results["cells"] if c["dataset"] == dataset), None)
        if count is None:
            continue
        seeds = info.get("seeds") or results["seeds"]
        parts.append(f"\n## {dataset} ({info['split']} split, {count} images, seeds {seeds})\n")
        for group in groups_of(rows, dataset):
            methods, metrics, cells = pivot(rows, dataset, group)
            directions = directions_of(cells)
            parts.append(f"\n### {group}\n")
            parts.append("| method | " + " | ".join(f"{m} {arrow(directions[m])}" for m in metrics) + " |")
            parts.append("|---" * (len(metrics) + 1) + "|")
            for method in methods:
                values = [cells.get((method, m)) for m in metrics]
                text = [format_value(v["mean"], v["std"], v["seeds"]) if v else "—" for v in values]
                parts.append(f"| {method} | " + " | ".join(text) + " |")
    return "\n".join(parts) + "\n"


def write_tables(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.md`` into ``out``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in results["table"]:
        writer.writerow({key: row[key] for key in COLUMNS})
    csv_path, md_path = out / "results.csv", out / "results.md"
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_tables(results))
    return csv_path, md_path
