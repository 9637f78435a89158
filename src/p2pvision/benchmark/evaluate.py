"""``p2pvision evaluate`` and the demo's table: one P2P checkpoint on one split of the data it was trained on, over a
sweep of delta, through the one evaluation loop (:func:`~p2pvision.benchmark.engine.run_benchmark`).

The run is a benchmark of one method and one data set: the same metric objects, the same Lightning test loop and
the same tables and report as ``p2pvision benchmark``, so the figures agree with a benchmark cell of the same
checkpoint. It runs in a fresh folder (finished cells of an earlier checkpoint at the same path are never reused);
the tables and the report are then copied to ``out``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pvision.benchmark.config import benchmark_from_dict
from p2pvision.benchmark.engine import run_benchmark
from p2pvision.cache import atomic_path, write_json
from p2pvision.config import apply_overrides
from p2pvision.errors import P2PVisionError
from p2pvision.models.p2p.checkpoint import load_p2p, read_checkpoint_config
from p2pvision.report.explanation_figures import save_figure
from p2pvision.report.p2p_figures import frontier_figure

DELTAS = (0.8, 0.9, 0.95, 0.99)
# What a P2P evaluation reports (spec/metrics.md): accuracy, sparsity, localisation, faithfulness and cost.
P2P_METRICS: list[Any] = [
    "accuracy", "kept_fraction", "tau", "precision", "iou", {"name": "pxap", "normalise": "none"}, "object_share",
    {"name": "p2p_agreement", "mode": "insertion"}, {"name": "p2p_agreement", "mode": "deletion"}, "cost",
]  # fmt: skip
COPIED = ("results.json", "results.csv", "results.md", "report.html")


def checkpoint_data(checkpoint: str | os.PathLike[str], data: Sequence[str] = ()) -> dict[str, Any]:
    """The data section a P2P checkpoint was trained on, with ``KEY=VALUE`` overrides (``data``)."""
    _, meta = read_checkpoint_config(checkpoint)
    if "experiment" not in meta and not data:
        raise P2PVisionError(f"'{checkpoint}' records no training data: name it with --data source=... root=...")
    experiment = apply_overrides({"data": dict(meta.get("experiment", {}).get("data", {}))},
                                 [f"data.{item}" for item in data])  # fmt: skip
    return experiment["data"]


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    split: str = "test",
    deltas: Sequence[float] = DELTAS,
    data: Sequence[str] = (),
    batch_size: int = 64,
    images: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Evaluate a P2P checkpoint per delta on ``split`` (its first ``images`` images, all if None) of the data it was
    trained on; writes ``evaluation.json``/``.csv``, the frontier plot (``frontier.png``/``.pdf``: accuracy and
    precision against the kept fraction, per delta) and the benchmark's tables and report into ``out``. Returns
    ``{str(delta): {metric: value, ..., "images": n}}`` and, under ``"directions"``, whether higher is better."""
    out = Path(out)
    load_p2p(checkpoint)  # a broken checkpoint (weights, settings, NaN) is one line before any data is read
    config = benchmark_from_dict({
        "name": f"evaluate {Path(checkpoint).name}", "seeds": [0], "batch_size": batch_size,
        "hardware": {"accelerator": "auto"}, "metrics": P2P_METRICS,
        "datasets": {split: {"data": checkpoint_data(checkpoint, data), "split": split, "images": images}},
        "methods": {"p2p": {"kind": "p2p", "checkpoint": str(Path(checkpoint)), "sweep": {"delta": list(deltas)}}},
    }, source=str(checkpoint))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="p2pvision-evaluate-") as folder:
        results = run_benchmark(config, folder, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            with atomic_path(out / name) as tmp:
                shutil.copyfile(Path(folder) / name, tmp)
    cells = {cell["method"]: cell for cell in results["cells"]}
    report: dict[str, dict[str, Any]] = {}
    directions: dict[str, bool] = {}
    for delta in deltas:
        cell = cells[f"p2p@delta={delta}"]
        report[str(delta)] = {**cell["values"], "images": cell["images"]}
        directions.update(cell["directions"])
    write_evaluation(out, checkpoint, split, report, directions)
    titled = {f"δ {delta}": row for delta, row in report.items()}
    save_figure(frontier_figure(titled, f"{Path(checkpoint)} on {split}: one point per delta"), out / "frontier",
                ("png", "pdf"))  # fmt: skip
    return {**report, "directions": directions}


def write_evaluation(
    out: Path, checkpoint: str | os.PathLike[str], split: str, report: dict[str, dict[str, Any]],
    directions: dict[str, bool],
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``evaluation.json`` (checkpoint, split, report, directions) and ``evaluation.csv`` (a row per delta)."""
    keys = [key for key in directions if key in next(iter(report.values()))]
    write_json(out / "evaluation.json", {"checkpoint": str(checkpoint), "split": split, "report": report,
                                         "higher_is_better": directions})  # fmt: skip
    rows = [f"{delta}," + ",".join(f"{row[key]:.6f}" for key in keys) for delta, row in report.items()]
    with atomic_path(out / "evaluation.csv") as tmp:
        tmp.write_text("\n".join(["delta," + ",".join(keys), *rows]) + "\n")
    return out / "evaluation.json", out / "evaluation.csv"
