"""Evaluate a P2P checkpoint on a split of the data it was trained on (``p2pvision evaluate``) and write the tables."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import P2PVisionError


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str], split: str = "test", deltas: Sequence[float] = (0.8, 0.9, 0.95, 0.99),
    data: Sequence[str] = (), batch_size: int = 64,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """Accuracy, sparsity, localisation and faithfulness of a P2P checkpoint on ``split`` of the data recorded in
    it (``data``: ``KEY=VALUE`` overrides of its data section), per delta (keyed by ``str(delta)``)."""
    from p2pvision.metrics.p2p_evaluation import evaluate_p2p
    from p2pvision.models.p2p.checkpoint import load_p2p, read_checkpoint_config
    from p2pvision.regions.partition import make_partitioner
    from p2pvision.train.data import build_stage
    from p2pvision.train.experiment import apply_overrides, experiment_from_dict

    _, meta = read_checkpoint_config(checkpoint)
    if "experiment" not in meta and not data:
        raise P2PVisionError(f"'{checkpoint}' records no training data: name it with --data source=... root=...")
    experiment = apply_overrides(meta.get("experiment", {}), [f"data.{item}" for item in data])
    config = experiment_from_dict(experiment, str(checkpoint))
    model = load_p2p(checkpoint)
    dataset = build_stage(config.data, split, make_partitioner(**model.config.partition))
    return evaluate_p2p(model, dataset, tuple(deltas), batch_size=batch_size)


def evaluation_keys(row: dict[str, Any]) -> list[str]:
    """The metrics of a report row (one delta's) that have a direction of better, in their canonical order."""
    from p2pvision.metrics.p2p_evaluation import HIGHER_IS_BETTER

    return [key for key in HIGHER_IS_BETTER if key in row]


def write_evaluation(
    out: str | os.PathLike[str], checkpoint: str | os.PathLike[str], split: str, report: dict[str, dict[str, Any]],
    deltas: Sequence[float],
) -> tuple[Path, Path]:  # fmt: skip
    """Write ``evaluation.json`` (checkpoint, split, report) and ``evaluation.csv`` (a row per delta) into ``out``."""
    out = Path(out)
    keys = evaluation_keys(report[str(deltas[0])])
    write_json(out / "evaluation.json", {"checkpoint": str(checkpoint), "split": split, "report": report})
    with atomic_path(out / "evaluation.csv") as tmp:
        tmp.write_text(
            "delta,"
            + ",".join(keys)
            + "\n"
            + "".join(
                f"{delta}," + ",".join(f"{report[str(delta)][key]:.6f}" for key in keys) + "\n" for delta in deltas
            )
        )
    return out / "evaluation.json", out / "evaluation.csv"
