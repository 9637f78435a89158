"""Metrics that compare explanations and interpretable models; each states whether higher or lower is better.

``make_metric(name, **params)`` builds one (``metric_names()`` lists them); every metric is called the same way,
``metric.update(explanation, EvalBatch(images, labels=..., mask=..., model=...))`` then ``metric.compute()``;
``score(attributions, model, images, target, metrics=[...])`` scores any attribution tensor (e.g. Captum's) in one
call.
Modules: ``prediction`` (accuracy, kept fraction, cost), ``localisation``, ``faithfulness``, ``similarity``.
"""

from importlib import import_module

# Names are imported on first use, so that building the command-line parser does not load torch.
_EXPORTS = {
    "EvalBatch": "p2pvision.metrics.base",
    "Metric": "p2pvision.metrics.base",
    "METRICS": "p2pvision.metrics.base",
    "make_metric": "p2pvision.metrics.registry",
    "metric_names": "p2pvision.metrics.registry",
    "score": "p2pvision.metrics.scoring",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'p2pvision.metrics' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
