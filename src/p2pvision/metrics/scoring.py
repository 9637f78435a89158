"""Score any attributions with this project's metrics in one call: :func:`score`.

``score(attributions, model, images, target, metrics=[...])`` turns an attribution tensor computed anywhere (e.g.
Captum's, (B,C,H,W) or (B,H,W)) into an :class:`~p2pvision.explanation.Explanation`
(:meth:`~p2pvision.explanation.Explanation.from_attributions`), runs each metric on it with ``model`` as the
classifier that faithfulness metrics query, and returns ``{key: value}``: the mean over the images of each metric's
numbers (the keys the metrics report, e.g. ``rise_insertion_auc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from p2pvision.classifier import as_classifier, eval_mode
from p2pvision.explanation import Explanation
from p2pvision.metrics.base import EvalBatch
from p2pvision.metrics.registry import make_metric

# Faithfulness metrics that need no ground truth: RISE insertion (from a blurred image) and deletion (to black).
DEFAULT_METRICS: tuple[dict[str, Any], ...] = (
    {"name": "rise", "mode": "insertion"},
    {"name": "rise", "mode": "deletion"},
)


def score(
    attributions: Any,
    model: nn.Module,
    images: Tensor,
    target: int | Sequence[int] | Tensor | None = None,
    metrics: Sequence[str | dict[str, Any]] | None = None,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    method: str = "attributions",
    mean: Any = None,
    std: Any = None,
) -> dict[str, float]:
    """``{key: value}`` of ``metrics`` (names or ``{name: ..., **params}``, see
    :func:`~p2pvision.metrics.metric_names`; default: RISE insertion and deletion) for ``attributions`` of
    ``images`` (B,3,H,W) in [0,1] explaining ``target`` (None: the prediction) of ``model``, any PyTorch classifier
    (``mean``/``std``: its normalisation, as for :func:`~p2pvision.explain.make_explainer`). ``attributions`` may
    also be an :class:`~p2pvision.explanation.Explanation`. ``labels`` (B,) and ``mask`` (B,H,W) bool are the ground
    truth the accuracy and localisation metrics need. A key two metrics share gets the metric's index appended."""
    classifier = as_classifier(model, mean, std)
    batch = EvalBatch(images, labels=labels, mask=mask, model=classifier)
    results: dict[str, float] = {}
    with eval_mode(classifier), torch.no_grad():
        explanation = (
            attributions
            if isinstance(attributions, Explanation)
            else Explanation.from_attributions(attributions, classifier, images, target, method=method)
        )
        for index, spec in enumerate(DEFAULT_METRICS if metrics is None else metrics):
            metric = make_metric(dict(spec) if isinstance(spec, dict) else spec)
            metric.update(explanation, batch)
            for key, value in metric.compute().items():
                results[key if key not in results else f"{key} ({index})"] = value
    return results
