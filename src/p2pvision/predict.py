"""Predictions of a trained P2P model on image files: class, confidence, tau, kept fraction, pictures, JSON."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2
from tqdm.auto import tqdm

from p2pvision.cache import write_json
from p2pvision.errors import P2PVisionError
from p2pvision.explanation import Explanation
from p2pvision.io import load_image, pil_to_tensor
from p2pvision.models.p2p.model import P2PModel
from p2pvision.report.p2p_figures import explanation_figure


def prepare_image(path: str | os.PathLike[str], size: int) -> torch.Tensor:
    """Load an image file robustly, resize its shorter side to ``size`` and centre-crop: (3,size,size) in [0,1]."""
    tensor = pil_to_tensor(load_image(path))
    return v2.CenterCrop(size)(v2.Resize(size, antialias=True)(tensor)).clamp(0, 1)


def p2p_record(explanation: Explanation, index: int, class_names: Sequence[str]) -> dict[str, Any]:
    """The summary of image ``index`` of a P2P explanation written to ``predictions.json``: class, confidence, the
    chosen tau and certainty delta, kept share and regions, region probabilities and evaluations."""
    slots = int(explanation.regions[index].max()) + 1  # type: ignore[index]
    probabilities = explanation.scores[index, :slots]  # type: ignore[index]
    predicted = int(explanation.predicted[index])
    return {
        "class": class_names[predicted],
        "class_index": predicted,
        "confidence": round(float(explanation.confidence[index]), 6),  # type: ignore[index]
        "tau": round(float(explanation.extras["tau"][index]), 4),
        "delta": explanation.params.get("delta"),
        "kept_fraction": round(float(explanation.kept_fraction[index]), 6),  # type: ignore[index]
        "kept_regions": torch.nonzero(probabilities > 0.5).flatten().tolist(),
        "num_regions": slots,
        "region_probs": [round(float(p), 6) for p in probabilities],
        "evaluations": int(explanation.evaluations[index]),  # type: ignore[index]
    }


def _written_since(path: Path, started: float) -> bool:
    return path.is_file() and path.stat().st_mtime >= started


def predict_files(
    model: P2PModel,
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    delta: float | None = None,
    tau: float | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[dict], list[tuple[str, str]]]:
    """Explain every image in ``paths``; write ``<stem>.png`` figures and ``predictions.json`` under ``out``.

    Each file stands on its own: one that cannot be read is skipped (the others get their full output). Returns
    the records written and the failures as ``(file, one-line reason)``."""
    out = Path(out)
    records: list[dict] = []
    failures: list[tuple[str, str]] = []
    size = model.config.image_size
    started = time.time() - 2  # a figure older than this is an earlier run's (2 s: coarse file-system clocks)
    try:
        for start in tqdm(range(0, len(paths), batch_size), desc="predicting", unit="batch", disable=not progress):
            chunk, images = [], []
            for offset, name in enumerate(paths[start : start + batch_size]):
                try:
                    images.append(prepare_image(name, size))
                except P2PVisionError as exc:
                    failures.append((str(name), str(exc)))
                    continue
                chunk.append((start + offset, Path(name)))
            if not chunk:
                continue
            batch = torch.stack(images)
            result = model.explain(batch, delta=delta, tau=tau).cpu()
            for index, (number, path) in enumerate(chunk):
                picture = (batch[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                figure = out / f"{number:04d}_{path.stem}.png"
                record = p2p_record(result, index, model.class_names)
                records.append({"file": str(path), "figure": str(figure), **record})  # before its figure, which
                explanation_figure(picture, result, index, path.name, figure, model.class_names)  # lands whole
    finally:  # also when interrupted: predictions.json lists every image finished, and only those
        records = [record for record in records if _written_since(Path(record["figure"]), started)]
        if records:
            write_json(out / "predictions.json", records)
    return records, failures
