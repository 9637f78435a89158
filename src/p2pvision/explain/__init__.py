"""Post-hoc explainers with one API: ``make_explainer(name, model, ...).explain(images, target=None)`` returns an
:class:`~p2pvision.explanation.Explanation`. Every module of this package that registers a class with
``@EXPLAINERS.register()`` adds a method (see ``rise.py``): nothing else lists them.

Perturbation methods (MoXI, MoXI(-), Shapley sampling, KernelSHAP, LIME, sliding patch, meaningful perturbation)
query the model through the region game and take any removal strategy (``removal="telea"`` gives SP-G, LIME-G,
MP-G); gradient and attention methods (Grad-CAM, Grad-CAM++, rollout) read the model once.
"""

from importlib import import_module

# Names are imported on first use, so that building the command-line parser does not load torch.
_EXPORTS = {
    "Attribution": "p2pvision.explain.base",
    "EXPLAINERS": "p2pvision.explain.base",
    "Explainer": "p2pvision.explain.base",
    "Explanation": "p2pvision.explanation",
    "explainer_names": "p2pvision.explain.base",
    "make_explainer": "p2pvision.explain.base",
    "PerturbationExplainer": "p2pvision.explain.base",
    "order_from_scores": "p2pvision.explain.base",
    "preset_settings": "p2pvision.explain.base",
    "GradCAM": "p2pvision.explain.gradcam",
    "GradCAMPlusPlus": "p2pvision.explain.gradcam",
    "LIME": "p2pvision.explain.lime",
    "MeaningfulPerturbation": "p2pvision.explain.meaningful",
    "MoXI": "p2pvision.explain.moxi",
    "MoXIMinus": "p2pvision.explain.moxi",
    "SlidingPatch": "p2pvision.explain.occlusion",
    "RISE": "p2pvision.explain.rise",
    "AttentionRollout": "p2pvision.explain.rollout",
    "KernelSHAP": "p2pvision.explain.shapley",
    "ShapleySampling": "p2pvision.explain.shapley",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'p2pvision.explain' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
