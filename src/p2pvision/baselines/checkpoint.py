"""Save and load trained baselines: :func:`save_baseline` and :func:`load_baseline`, on the Hub conventions of
:mod:`p2pvision.models.hub` (each baseline class has ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``);
:func:`load_baseline` finds the class from the checkpoint's kind."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import torch

from p2pvision.baselines.base import BASELINES
from p2pvision.errors import WeightsError
from p2pvision.models.hub import read_checkpoint, resolve_checkpoint
from p2pvision.models.weights import CONFIG_FILE

if TYPE_CHECKING:
    from p2pvision.baselines.pixel_mask import PixelMaskClassifier
    from p2pvision.baselines.realx import RealXModel
    from p2pvision.baselines.soft_mask import SoftMaskModel

# A trained baseline: each has ``kind``, ``config`` (a P2PConfig), ``class_names``, ``classifier`` and ``explain``.
Baseline: TypeAlias = "PixelMaskClassifier | RealXModel | SoftMaskModel"


def save_baseline(model: Baseline, folder: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> Path:
    """``model.save_pretrained(folder, **extra)``: ``extra`` may hold ``experiment`` and ``metrics``; returns the
    folder."""
    return model.save_pretrained(folder, **(extra or {}))


def load_baseline(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Baseline:
    """Load a baseline of any kind (a folder, a file in it or a Hub repository id), in eval mode (every failure one
    line; see :mod:`p2pvision.models.hub`)."""
    folder = resolve_checkpoint(path, "baseline", "'p2pvision train' with train.mode=<baseline>")
    kind = read_checkpoint(folder).get("kind")
    if not isinstance(kind, str) or kind not in BASELINES:
        raise WeightsError(f"'{folder / CONFIG_FILE}' describes a {kind!r} model, not a baseline (one of "
                           f"{', '.join(BASELINES.names())})")  # fmt: skip
    cls = cast("type[Baseline]", BASELINES.get(kind))  # the registry holds the three Baseline classes
    return cls.from_pretrained(folder, device=device)
