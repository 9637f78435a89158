"""Prediction and cost: top-1 accuracy, the hard kept-pixel fraction (mean and distribution), and what an
explanation costs next to one plain forward pass of the same model on the same machine."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from p2pvision.explanation import Explanation
from p2pvision.metrics.base import METRICS, EvalBatch, Metric
from p2pvision.regions.masks import hard_keep


@METRICS.register()
class Accuracy(Metric):
    """Top-1 accuracy of the method's prediction (images with label -1 are left out). Higher is better."""

    category = "prediction"
    name = "accuracy"
    higher_is_better = True
    requires = ("labels",)

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        labels = self.required(batch.labels, "labels").to(explanation.predicted.device)
        return {self.name: (explanation.predicted == labels).double().masked_fill(labels < 0, float("nan"))}


@METRICS.register()
class KeptFraction(Metric):
    """Share of pixels the model predicted from (the keep mask; a soft mask's is its mean, see ``hard_keep``), with its
    distribution over ``bins`` equal bins of [0, 1] (:meth:`histogram`), and ``empty_masks``: the share of images
    whose mask keeps nothing (the model then predicts from a fully removed image). Lower is sparser."""

    category = "prediction"
    name = "kept_fraction"
    higher_is_better = False
    requires = ("keep",)
    counts: Tensor  # state: images per bin
    def __init__(self, bins: int = 20) -> None:
        super().__init__((self.name, "empty_masks"))
        self.bins = int(bins)
        self.add_state("counts", torch.zeros(self.bins, dtype=torch.float64), dist_reduce_fx="sum")

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        fraction = hard_keep(self.required(explanation.keep, "keep")).flatten(1).double().mean(1)
        index = (fraction * self.bins).long().clamp(max=self.bins - 1)
        self.counts += torch.bincount(index, minlength=self.bins).double().to(self.counts.device)
        return {self.name: fraction, "empty_masks": (fraction == 0).double()}

    def histogram(self) -> dict[str, list[float]]:
        """Image counts per bin of the kept fraction (all processes): ``{"edges": [...], "counts": [...]}``."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return {"edges": torch.linspace(0, 1, self.bins + 1).tolist(), "counts": self.counts.tolist()}

    @property
    def params(self) -> dict[str, Any]:
        return {"bins": self.bins}


@METRICS.register()
class Cost(Metric):
    """Model evaluations per image, seconds per image, and their ratio to one plain forward pass of the same model
    on the same images (``forward_ratio``: 1 is the cost of a prediction). Lower is better."""

    category = "cost"
    name = "cost"
    higher_is_better = False
    requires = ("evaluations",)

    def __init__(self) -> None:
        super().__init__(("evaluations", "seconds", "forward_ratio"))

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        count = len(explanation)
        seconds = torch.full((count,), explanation.seconds / max(count, 1), dtype=torch.float64)
        ratio = explanation.seconds / batch.reference_seconds if batch.reference_seconds else float("nan")
        return {
            "evaluations": self.required(explanation.evaluations, "evaluations").double(),
            "seconds": seconds,
            "forward_ratio": torch.full((count,), ratio, dtype=torch.float64),
        }


@METRICS.register()
class ChosenTau(Metric):
    """P2P's chosen budget tau per image (mean): how much of the image the certainty delta asks for. Lower is
    better at equal accuracy. Applies to explanations with a ``tau`` extra."""

    category = "prediction"
    name = "tau"
    higher_is_better = False

    def applicable(self, explanation: Explanation, batch: EvalBatch) -> bool:
        return "tau" in explanation.extras

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        return {self.name: explanation.extras["tau"].double()}
