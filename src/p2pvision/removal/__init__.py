"""Removal strategies: how removed regions are filled before the classifier sees an image.

``make_removal(name, **params)`` builds one by name; every strategy is a :class:`Removal` called as
``removal(images, keep, regions=None)``, except ViT token dropping (:class:`TokenDropping`), which removes
patch tokens inside the model and is used through the region game. Fills read from a file are named with it:
``learned:PATH`` (an inpainter trained by ``p2pvision train --config inpainter``), ``lama:PATH`` (LaMa TorchScript).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from p2pvision.errors import ConfigError
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
from p2pvision.removal.learned import (
    GatedInpainter,
    LamaInpaint,
    LearnedInpaint,
    load_inpainter,
    save_inpainter,
    weights_digest,
)
from p2pvision.removal.tokens import TokenDropping

# Removals given with a file: ``NAME:PATH``.
FILE_REMOVALS = ("learned", "lama")

__all__ = [
    "BaselineFill",
    "BiharmonicInpaint",
    "BlackFill",
    "BlurFill",
    "CallableFill",
    "ConstantFill",
    "GreyFill",
    "GatedInpainter",
    "HoleFill",
    "LamaInpaint",
    "LearnedInpaint",
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
    "load_inpainter",
    "make_removal",
    "removal_names",
    "removal_weights_digest",
    "save_inpainter",
    "split_removal",
]


def removal_names() -> list[str]:
    """Names accepted by :func:`make_removal`."""
    return REMOVALS.names()


def split_removal(name: str) -> tuple[str, dict[str, Any]]:
    """``"learned:PATH"`` -> ``("learned", {"path": "PATH"})``; a plain name -> ``(name, {})``."""
    base, sep, path = name.partition(":") if isinstance(name, str) else (name, "", "")
    if not sep:
        return name, {}
    if REMOVALS.resolve(base) not in FILE_REMOVALS or not path:
        raise ConfigError(f"removal '{name}': only {', '.join(FILE_REMOVALS)} take a file, as NAME:PATH "
                          "(e.g. learned:results/inpainter/model)")  # fmt: skip
    return base, {"path": path}


def make_removal(name: str, model: nn.Module | None = None, **params: Any) -> Removal | TokenDropping:
    """Build a removal strategy by name (see :func:`removal_names`); ``learned:PATH`` and ``lama:PATH`` name the
    file of a learned inpainter.

    With ``model`` given, ``"mean"`` uses the model's own normalisation mean (zero after normalisation)
    unless ``mean=`` is passed; for a network whose normalisation is unknown, each image's mean colour.
    """
    name, given = split_removal(name)
    if REMOVALS.resolve(name) == "mean" and model is not None and "mean" not in params:
        return MeanColourFill.for_model(model)
    return REMOVALS.create(name, **given, **params)


def removal_weights_digest(name: str) -> str | None:
    """The SHA-256 prefix of the weights file that ``learned:PATH`` or ``lama:PATH`` names (what a cached result
    computed with it depends on, whatever the path); None for other removals and for a file that is not there."""
    base, given = split_removal(name)
    if not given:
        return None
    return weights_digest(given["path"], lama=REMOVALS.resolve(base) == "lama")
