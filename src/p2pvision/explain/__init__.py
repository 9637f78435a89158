"""Post-hoc explainers with one API: ``make_explainer(name, model, ...).explain(images, target=None)``.

Perturbation methods (MoXI, MoXI(-), Shapley sampling, KernelSHAP, LIME, sliding patch, meaningful perturbation)
query the model through the region game and take any removal strategy (``removal="telea"`` gives SP-G, LIME-G,
MP-G); gradient and attention methods (Grad-CAM, Grad-CAM++, rollout) read the model once.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.explain.base import (
    Attribution,
    Cost,
    Explainer,
    ExplanationResult,
    PerturbationExplainer,
    order_from_scores,
)
from p2pvision.explain.gradcam import GradCAM, GradCAMPlusPlus
from p2pvision.explain.lime import LIME
from p2pvision.explain.meaningful import MeaningfulPerturbation
from p2pvision.explain.moxi import MoXI, MoXIMinus
from p2pvision.explain.occlusion import SlidingPatch
from p2pvision.explain.rollout import AttentionRollout
from p2pvision.explain.shapley import KernelSHAP, ShapleySampling

__all__ = [
    "AttentionRollout",
    "Attribution",
    "Cost",
    "ExplanationResult",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "KernelSHAP",
    "LIME",
    "MeaningfulPerturbation",
    "MoXI",
    "MoXIMinus",
    "PerturbationExplainer",
    "ShapleySampling",
    "SlidingPatch",
    "explainer_names",
    "make_explainer",
    "order_from_scores",
]

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
