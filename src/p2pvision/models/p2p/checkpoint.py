"""Save and load P2P models as ``model.safetensors`` plus ``config.json`` (no pickled code is ever loaded)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from safetensors.torch import save_model

from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import P2PVisionError, WeightsError
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.model import P2PModel
from p2pvision.models.weights import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_folder,
    config_error,
    load_weights,
    read_config,
)

FORMAT = "p2pvision-p2p"
FORMAT_VERSION = 1


def save_p2p(model: P2PModel, folder: str | os.PathLike[str], extra: dict | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (each atomically); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    config = dataclasses.replace(model.config, class_names=list(model.class_names))
    write_json(
        folder / CONFIG_FILE,
        {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(), **(extra or {})},
    )
    return folder


def read_checkpoint_config(path: str | os.PathLike[str]) -> tuple[Path, dict]:
    """The checkpoint folder (``path`` may name the folder or a file in it) and its parsed config.json."""
    folder = checkpoint_folder(path, "P2P", "'p2pvision train'")
    return folder, read_config(folder, FORMAT, FORMAT_VERSION)


def load_p2p(
    path: str | os.PathLike[str], *, num_classes: int | None = None, device: str | torch.device = "cpu"
) -> P2PModel:
    """Load a model saved by :func:`save_p2p`, checking format version, settings, class count, architecture and
    that every weight is finite (see :mod:`p2pvision.models.weights`)."""
    folder, meta = read_checkpoint_config(path)
    try:
        config = P2PConfig.from_dict(meta["config"])
    except (P2PVisionError, KeyError, TypeError, ValueError) as exc:
        raise config_error(folder, exc) from None
    if num_classes is not None and config.num_classes != num_classes:
        raise WeightsError(f"checkpoint '{folder}' has {config.num_classes} classes, expected {num_classes}")
    # The saved weights replace everything: build the networks without fetching pretrained weights.
    try:
        model = P2PModel(dataclasses.replace(config, classifier_weights=None, selector_weights=None))
    except P2PVisionError as exc:  # e.g. a backbone name this timm does not know
        raise config_error(folder, exc) from None
    model.config = config
    load_weights(model, folder, device)
    return model.to(device).eval()
