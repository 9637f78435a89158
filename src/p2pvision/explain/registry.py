"""The registry of explainers by name: ``make_explainer(name, model, **params)``."""

from __future__ import annotations

from typing import Any

from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.explain.base import (
    Explainer,
)
from p2pvision.explain.gradcam import GradCAM, GradCAMPlusPlus
from p2pvision.explain.lime import LIME
from p2pvision.explain.meaningful import MeaningfulPerturbation
from p2pvision.explain.moxi import MoXI, MoXIMinus
from p2pvision.explain.occlusion import SlidingPatch
from p2pvision.explain.rollout import AttentionRollout
from p2pvision.explain.shapley import KernelSHAP, ShapleySampling

EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (
        MoXI,
        MoXIMinus,
        ShapleySampling,
        KernelSHAP,
        LIME,
        SlidingPatch,
        MeaningfulPerturbation,
        GradCAM,
        GradCAMPlusPlus,
        AttentionRollout,
    )
}
ALIASES = {"sp": "sliding_patch", "occlusion": "sliding_patch", "mp": "meaningful_perturbation"}


def explainer_names() -> list[str]:
    """Names accepted by :func:`make_explainer` (aliases: sp, occlusion, mp)."""
    return list(EXPLAINERS)


def make_explainer(name: str, model: nn.Module, **params: Any) -> Explainer:
    """Build an explainer by name for ``model``; ``params`` are the class's keyword arguments."""
    name = ALIASES.get(name, name)
    if name not in EXPLAINERS:
        raise ConfigError(f"unknown explainer {name!r}; choose one of {explainer_names()}")
    try:
        return EXPLAINERS[name](model, **params)
    except TypeError as error:  # unexpected keyword
        raise ConfigError(f"invalid parameters for explainer {name!r}: {error}") from error
