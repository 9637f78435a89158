"""Save and load P2P models: :func:`save_p2p` and :func:`load_p2p`, the functions the commands use, on the Hub
conventions of :mod:`p2pvision.models.hub` (``P2PModel.save_pretrained`` / ``from_pretrained``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from p2pvision.errors import WeightsError
from p2pvision.models.hub import read_checkpoint
from p2pvision.models.p2p.model import P2PModel
from p2pvision.models.weights import checkpoint_folder


def save_p2p(model: P2PModel, folder: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> Path:
    """``model.save_pretrained(folder, **extra)``: ``extra`` may hold ``experiment`` and ``metrics``; returns the
    folder."""
    return model.save_pretrained(folder, **(extra or {}))


def read_checkpoint_config(path: str | os.PathLike[str]) -> tuple[Path, dict]:
    """The local checkpoint folder (``path`` may name the folder or a file in it) and its config.json (in the
    current layout, whichever format wrote it)."""
    folder = checkpoint_folder(path, "P2P", "'p2pvision train'")
    return folder, read_checkpoint(folder)


def load_p2p(
    path: str | os.PathLike[str], *, num_classes: int | None = None, device: str | torch.device = "cpu"
) -> P2PModel:
    """``P2PModel.from_pretrained(path)`` (a folder, a file in it or a Hub repository id), checking also the class
    count when ``num_classes`` is given."""
    model = P2PModel.from_pretrained(path, device=device)
    if num_classes is not None and model.config.num_classes != num_classes:
        raise WeightsError(f"checkpoint '{path}' has {model.config.num_classes} classes, expected {num_classes}")
    return model
