"""What every metric gets and the streaming base class they share (:class:`Metric`).

A method (P2P, a baseline, a full-image classifier, a post-hoc explainer) turns a batch of images into an
:class:`~p2pvision.explanation.Explanation`: its prediction and whatever explanation it has (a pixel map, per-region
scores over its regions, the mask it predicted from, its cost). Whoever evaluates adds what the method does not
know, an :class:`EvalBatch`: the images, ground truth (labels, object masks), the classifier that faithfulness
metrics query. Each metric is one object with one call, ``metric.update(explanation, batch)``, a
``higher_is_better`` direction, and ``compute()`` giving the mean of its per-image values over everything seen.

Metrics are ``torchmetrics.Metric`` modules: their running sums are states that Lightning moves to the device
and ``compute()`` adds up over all processes, so the same objects evaluate a data set spread over GPUs or nodes.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import torch
import torchmetrics
from torch import Tensor, nn

from p2pvision.errors import ConfigError
from p2pvision.explanation import TENSOR_FIELDS, Explanation
from p2pvision.registry import Registry

METRICS: Registry[type[Metric]] = Registry("metric", package="p2pvision.metrics")

_T = TypeVar("_T")


@dataclass
class EvalBatch:
    """What the evaluator knows about a batch of B images beside the method's explanation (tensors on one device).

    ``images`` (B,3,H,W) in [0,1]; ``labels`` (B,) true classes (-1 where unknown); ``mask`` (B,H,W) bool
    ground-truth relevant pixels; ``object_mask`` (B,H,W) bool the object's pixels where they are not the relevant
    ones (the distractor of the scene task); ``model`` the classifier faithfulness metrics query (the one the method
    explains); ``reference_map`` another map of the same images (other seed or setting) for map similarity;
    ``reference_seconds`` the wall time of one plain forward pass of the batch through ``model``.
    """

    images: Tensor
    labels: Tensor | None = None
    mask: Tensor | None = None
    object_mask: Tensor | None = None
    model: nn.Module | None = None
    reference_map: Tensor | None = None
    reference_seconds: float | None = None


def present(explanation: Explanation, batch: EvalBatch) -> set[str]:
    """Names of the explanation's tensor fields and the batch's fields that are given (not None)."""
    given = {name for name in TENSOR_FIELDS if getattr(explanation, name) is not None}
    return given | {f.name for f in fields(batch) if getattr(batch, f.name) is not None}


class Metric(torchmetrics.Metric):
    """Base class: the mean over images of one or more per-image values (NaN values are left out).

    Subclasses set ``name``, ``category``, ``requires`` (the :class:`~p2pvision.explanation.Explanation` and
    :class:`EvalBatch` fields they need), ``higher_is_better``
    (one direction for all their keys) and implement :meth:`values`. ``keys`` name the reported numbers.
    """

    name: ClassVar[str]
    category: ClassVar[str]  # prediction, cost, localisation, faithfulness or similarity (groups report tables)
    requires: ClassVar[tuple[str, ...]] = ()
    full_state_update = False
    # running sums registered with add_state (torchmetrics keeps them as tensors)
    total: Tensor
    count: Tensor
    curve_total: Tensor
    curve_count: Tensor

    def __init__(self, keys: tuple[str, ...] | None = None) -> None:
        super().__init__()
        self.keys = tuple(keys or (self.name,))
        self.add_state("total", torch.zeros(len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")

    @abstractmethod
    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        """Per-image values (B,) for each key; NaN where the metric is undefined for an image."""

    def required(self, value: _T | None, name: str) -> _T:
        """``value``, a field named in ``requires`` (set, as :meth:`update` checked); a ValueError naming it if not."""
        if value is None:
            raise ValueError(f"metric '{self.name}' needs {name} in its inputs")
        return value

    def applicable(self, explanation: Explanation, batch: EvalBatch) -> bool:
        """Whether the explanation and the batch have every field this metric needs."""
        return set(self.requires) <= present(explanation, batch)

    def update(self, explanation: Explanation, batch: EvalBatch) -> None:
        missing = sorted(set(self.requires) - present(explanation, batch))
        if missing:
            raise ValueError(f"metric '{self.name}' needs {', '.join(missing)} in its inputs")
        values = self.values(explanation, batch)
        for index, key in enumerate(self.keys):
            value = values[key].detach().to(self.total.device, torch.float64).flatten()
            finite = ~value.isnan()
            self.total[index] += value[finite].sum()
            self.count[index] += finite.sum()

    def compute(self) -> dict[str, float]:
        """Mean per key over all images seen (on all processes); NaN for a key no image defined."""
        return {
            key: float(self.total[i] / self.count[i]) if self.count[i] > 0 else math.nan
            for i, key in enumerate(self.keys)
        }

    def track_curve(self, points: Tensor) -> None:
        """Also keep the mean of a per-image curve (B,P) sampled at ``points`` (x values); see :meth:`add_curves`."""
        self.points = points.double()
        self.add_state("curve_total", torch.zeros(len(points), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("curve_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def add_curves(self, curves: Tensor) -> None:
        """Accumulate per-image curves (B,P)."""
        self.curve_total += curves.detach().double().sum(0)
        self.curve_count += curves.shape[0]

    def curve(self) -> dict[str, list[float]] | None:
        """The mean curve ``{"x": points, "y": mean}`` over all images (all processes); None without a curve."""
        if not hasattr(self, "curve_total"):
            return None
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            mean = self.curve_total / self.curve_count.clamp(min=1)
            return {"x": self.points.tolist(), "y": mean.tolist()}

    def directions(self) -> dict[str, bool]:
        """``{key: higher_is_better}``."""
        return {key: bool(self.higher_is_better) for key in self.keys}

    @property
    def params(self) -> dict[str, Any]:
        """The metric's settings (removal, partition, steps...), JSON-serialisable."""
        return {}

    @property
    def settings(self) -> dict[str, Any]:
        """Everything a score must be reported with: name, direction and parameters."""
        return {"metric": self.name, "category": self.category, "higher_is_better": bool(self.higher_is_better),
                **self.params}  # fmt: skip


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``, else a ConfigError naming the setting."""
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_fraction(name: str, value: Any, low_open: bool = True) -> float:
    """``value`` as float if it lies in (0, 1] (or [0, 1] with ``low_open=False``), else a ConfigError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        bounds = "(0, 1]" if low_open else "[0, 1]"
        raise ConfigError(f"{name} must be a number in {bounds}, got {value!r}")
    return float(value)
