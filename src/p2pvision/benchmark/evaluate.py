"""``p2pvision evaluate`` and the demo's table: P2P checkpoints on one split of the data they were trained on, over a
sweep of delta (tau searched per image) and of fixed tau, through the one evaluation loop
(:func:`~p2pvision.benchmark.engine.run_benchmark`).

The run is a benchmark of the checkpoints' settings on one data set: the same metric objects, the same Lightning
test loop and the same tables and report as ``p2pvision benchmark``, so the figures agree with a benchmark cell of
the same checkpoint. It runs in a fresh folder (finished cells of an earlier checkpoint at the same path are never
reused); the tables and the report are then copied to ``out``.
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
    taus: Sequence[float] = (),
    compare: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, dict[str, Any]]:
    """Evaluate a P2P checkpoint on ``split`` (its first ``images`` images, all if None) of the data it was trained
    on, at each certainty ``delta`` (tau searched per image) and each fixed budget ``tau``; ``compare`` adds other
    checkpoints of the same data (e.g. one trained with the authors' additive tau conditioning) at the same
    settings. Writes ``evaluation.json``/``.csv``, the frontier plot (``frontier.png``/``.pdf``: accuracy and
    precision against the hard kept fraction, one line per checkpoint, one point per setting, with the share of
    empty masks) and the benchmark's tables and report into ``out``.

    Returns ``{setting: {metric: value, ..., "images": n}}`` with settings such as ``"delta=0.9"`` and
    ``"tau=0.1"`` (prefixed ``"<folder name> "`` for compared checkpoints) and, under ``"directions"``, whether
    higher is better."""
    out = Path(out)
    models = [Path(checkpoint), *(Path(path) for path in compare)]
    # a broken checkpoint (weights, settings, NaN) is one line before any data is read
    conditionings = [load_p2p(model).config.tau_conditioning for model in models]
    methods: dict[str, dict[str, Any]] = {}
    for number, model in enumerate(models):
        name = "p2p" if number == 0 else f"p2p_{number}"
        if deltas:
            methods[name] = {"kind": "p2p", "checkpoint": str(model), "sweep": {"delta": list(deltas)}}
        if taus:
            methods[f"{name}_tau"] = {"kind": "p2p", "checkpoint": str(model), "sweep": {"tau": list(taus)}}
    config = benchmark_from_dict({
        "name": f"evaluate {Path(checkpoint).name}", "seeds": [0], "batch_size": batch_size,
        "hardware": {"accelerator": "auto"}, "metrics": P2P_METRICS,
        "datasets": {split: {"data": checkpoint_data(checkpoint, data), "split": split, "images": images}},
        "methods": methods,
    }, source=str(checkpoint))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="p2pvision-evaluate-") as folder:
        results = run_benchmark(config, folder, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            with atomic_path(out / name) as tmp:
                shutil.copyfile(Path(folder) / name, tmp)
    cells = {cell["method"]: cell for cell in results["cells"]}
    report: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, dict[str, Any]]] = {}
    directions: dict[str, bool] = {}
    for number, model in enumerate(models):
        name, prefix = ("p2p", "") if number == 0 else (f"p2p_{number}", f"{model.name} ")
        label = _series_label(model, conditionings[number], len(models))
        for key, values, method in (("delta", deltas, name), ("tau", taus, f"{name}_tau")):
            for value in values:
                cell = cells[f"{method}@{key}={value}"]
                row = {**cell["values"], "images": cell["images"]}
                report[f"{prefix}{key}={value}"] = row
                series.setdefault(label, {})[f"{'δ' if key == 'delta' else 'τ'} {value}"] = row
                directions.update(cell["directions"])
    write_evaluation(out, checkpoint, split, report, directions)
    title = f"{Path(checkpoint)} on {split}" + (f" vs {len(compare)} other" if compare else "")
    save_figure(frontier_figure(series, title), out / "frontier", ("png", "pdf"))
    return {**report, "directions": directions}


def _series_label(model: Path, conditioning: str, count: int) -> str:
    """A checkpoint's name in the frontier plot: its tau conditioning, and its folder when there are several."""
    label = "tau conditioning: FiLM (p2pvision)" if conditioning == "film" else "tau conditioning: additive (authors')"
    if count > 1:
        label = f"{model.parent.name}/{model.name}: {label}" if model.name == "model" else f"{model.name}: {label}"
    return label


def write_evaluation(
    out: Path, checkpoint: str | os.PathLike[str], split: str, report: dict[str, dict[str, Any]],
    directions: dict[str, bool],
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``evaluation.json`` (checkpoint, split, report, directions) and ``evaluation.csv`` (a row per setting)."""
    keys = [key for key in directions if key in next(iter(report.values()))]
    write_json(out / "evaluation.json", {"checkpoint": str(checkpoint), "split": split, "report": report,
                                         "higher_is_better": directions})  # fmt: skip
    rows = [f"{setting}," + ",".join(f"{row[key]:.6f}" for key in keys) for setting, row in report.items()]
    with atomic_path(out / "evaluation.csv") as tmp:
        tmp.write_text("\n".join(["setting," + ",".join(keys), *rows]) + "\n")
    return out / "evaluation.json", out / "evaluation.csv"
