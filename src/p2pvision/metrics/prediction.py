"""Prediction and cost: top-1 accuracy, the hard kept-pixel fraction (mean and distribution), and what an
explanation costs next to one plain forward pass of the same model on the same machine."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from p2pvision.metrics.base import EvalInputs, Metric
from p2pvision.regions.masks import hard_keep


class Accuracy(Metric):
    """Top-1 accuracy of the method's prediction (images with label -1 are left out). Higher is better."""

    category = "prediction"
    name = "accuracy"
    higher_is_better = True
    requires = ("labels",)

    def values(self, inputs: EvalInputs) -> dict[str, Tensor]:
        labels = inputs.labels.to(inputs.predicted.device)
        return {self.name: (inputs.predicted == labels).double().masked_fill(labels < 0, float("nan"))}


class KeptFraction(Metric):
    """Share of pixels the model predicted from (the keep mask; a soft mask's is its mean, see ``hard_keep``), with its
    distribution over ``bins`` equal bins of [0, 1] (:meth:`histogram`). Lower is sparser."""

    category = "prediction"
    name = "kept_fraction"
    higher_is_better = False
    requires = ("keep",)

    def __init__(self, bins: int = 20) -> None:
        super().__init__()
        self.bins = int(bins)
        self.add_state("counts", torch.zeros(self.bins, dtype=torch.float64), dist_reduce_fx="sum")

    def values(self, inputs: EvalInputs) -> dict[str, Tensor]:
        fraction = hard_keep(inputs.keep).flatten(1).double().mean(1)
        index = (fraction * self.bins).long().clamp(max=self.bins - 1)
        self.counts += torch.bincount(index, minlength=self.bins).double().to(self.counts.device)
        return {self.name: fraction}

    def histogram(self) -> dict[str, list[float]]:
        """Image counts per bin of the kept fraction (all processes): ``{"edges": [...], "counts": [...]}``."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return {"edges": torch.linspace(0, 1, self.bins + 1).tolist(), "counts": self.counts.tolist()}

    @property
    def params(self) -> dict[str, Any]:
        return {"bins": self.bins}


class Cost(Metric):
    """Model evaluations per image, seconds per image, and their ratio to one plain forward pass of the same model
    on the same images (``forward_ratio``: 1 is the cost of a prediction). Lower is better."""

    category = "cost"
    name = "cost"
    higher_is_better = False
    requires = ("evaluations", "seconds")

    def __init__(self) -> None:
        super().__init__(("evaluations", "seconds", "forward_ratio"))

    def values(self, inputs: EvalInputs) -> dict[str, Tensor]:
        count = len(inputs)
        seconds = torch.full((count,), inputs.seconds / max(count, 1), dtype=torch.float64)
        ratio = inputs.seconds / inputs.reference_seconds if inputs.reference_seconds else float("nan")
        return {
            "evaluations": inputs.evaluations.double(),
            "seconds": seconds,
            "forward_ratio": torch.full((count,), ratio, dtype=torch.float64),
        }
