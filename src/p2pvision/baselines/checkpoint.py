"""Save and load trained baselines as ``model.safetensors`` plus ``config.json`` (no pickled code is loaded)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import torch
from safetensors.torch import save_model

from p2pvision.baselines.base import BASELINES
from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import P2PVisionError, WeightsError
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.weights import CONFIG_FILE, checkpoint_folder, config_error, load_weights, read_config

if TYPE_CHECKING:
    from p2pvision.baselines.pixel_mask import PixelMaskClassifier
    from p2pvision.baselines.realx import RealXModel
    from p2pvision.baselines.soft_mask import SoftMaskModel

FORMAT = "p2pvision-baseline"
FORMAT_VERSION = 1

# A trained baseline: each has ``kind``, ``config`` (a P2PConfig), ``class_names``, ``classifier`` and ``explain``.
Baseline: TypeAlias = "PixelMaskClassifier | RealXModel | SoftMaskModel"


def save_baseline(model: Baseline, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (kind and settings) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT, "kind": model.kind})
    config = dataclasses.replace(model.config, class_names=list(model.class_names))
    write_json(folder / "config.json", {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": model.kind,
                                        "config": config.to_dict(), **(extra or {})})  # fmt: skip
    return folder


def load_baseline(folder: str | os.PathLike[str], device: str | torch.device = "cpu") -> Baseline:
    """Load a baseline saved by :func:`save_baseline`, in eval mode (every failure one line; see
    :mod:`p2pvision.models.weights`)."""
    folder = checkpoint_folder(folder, "baseline", "'p2pvision train' with train.mode=<baseline>")
    meta = read_config(folder, FORMAT)
    if meta.get("kind") not in BASELINES:
        raise WeightsError(f"'{folder / CONFIG_FILE}' describes baseline kind {meta.get('kind')!r}, not one of "
                           f"{', '.join(BASELINES.names())}")  # fmt: skip
    try:
        config = P2PConfig.from_dict(meta["config"])
    except (P2PVisionError, KeyError, TypeError, ValueError) as exc:
        raise config_error(folder, exc) from None
    cls = cast("type[Baseline]", BASELINES.get(meta["kind"]))  # the registry holds the three Baseline classes
    try:
        model = cls(dataclasses.replace(config, classifier_weights=None, selector_weights=None))
    except P2PVisionError as exc:  # e.g. a backbone name this timm does not know
        raise config_error(folder, exc) from None
    model.config = config
    load_weights(model, folder, device)
    return model.to(device).eval()
