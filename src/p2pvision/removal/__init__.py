"""Removal strategies: how removed regions are filled before the classifier sees an image.

``make_removal(name, **params)`` builds one by name; every strategy is a :class:`Removal` called as
``removal(images, keep, regions=None)``, except ViT token dropping (:class:`TokenDropping`), which removes
patch tokens inside the model and is used through the region game.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from p2pvision.removal.base import REMOVALS, Removal, blend, hole_of
from p2pvision.removal.fills import (
    BaselineFill,
    BlackFill,
    BlurFill,
    ConstantFill,
    GreyFill,
    MeanColourFill,
    NoiseFill,
    RegionMeanFill,
    gaussian_blur,
)
from p2pvision.removal.inpaint import (
    BiharmonicInpaint,
    CallableFill,
    HoleFill,
    NavierStokesInpaint,
    OpenCVInpaint,
    TeleaInpaint,
)
from p2pvision.removal.tokens import TokenDropping

__all__ = [
    "BaselineFill",
    "BiharmonicInpaint",
    "BlackFill",
    "BlurFill",
    "CallableFill",
    "ConstantFill",
    "GreyFill",
    "HoleFill",
    "MeanColourFill",
    "NavierStokesInpaint",
    "NoiseFill",
    "REMOVALS",
    "OpenCVInpaint",
    "RegionMeanFill",
    "Removal",
    "TeleaInpaint",
    "TokenDropping",
    "blend",
    "gaussian_blur",
    "hole_of",
    "make_removal",
    "removal_names",
]


def removal_names() -> list[str]:
    """Names accepted by :func:`make_removal`."""
    return REMOVALS.names()


def make_removal(name: str, model: nn.Module | None = None, **params: Any) -> Removal | TokenDropping:
    """Build a removal strategy by name (see :func:`removal_names`).

    With ``model`` given, ``"mean"`` uses the model's own normalisation mean (zero after normalisation)
    unless ``mean=`` is passed; for a network whose normalisation is unknown, each image's mean colour.
    """
    if REMOVALS.resolve(name) == "mean" and model is not None and "mean" not in params:
        return MeanColourFill.for_model(model)
    return REMOVALS.create(name, **params)
