"""A soft-mask selector (COMET-like): a continuous per-pixel mask ``m`` in [0, 1] learned jointly with the
classifier, which sees ``x * m + fill * (1 - m)``; a budget hinge ``lambda * max(mean(m) - tau, 0)`` keeps the mask
small. Soft values can carry class information in the mask itself (its shape, or faint pixels a classifier learns
to read), so accuracy on the *inverted* mask ``1 - m`` (the COMET^-1 check) stays high where a faithful binary
mask such as P2P's loses it."""

from __future__ import annotations

import time

import torch
from torch import Tensor

from p2pvision.baselines.base import BASELINES, SelectorClassifier, selection_explanation, selection_logits
from p2pvision.explanation import Explanation
from p2pvision.game import classify_masked


@BASELINES.register()
class SoftMaskModel(SelectorClassifier):
    """Selector (per-pixel sigmoid mask) + classifier on the softly masked image."""

    kind = "soft_mask"
    card_summary = (
        "A soft-mask baseline (p2pvision, COMET-like): a continuous per-pixel mask learned jointly with the "
        "classifier under a budget on its mean."
    )

    def mask(self, images: Tensor) -> Tensor:
        """The soft mask (B, H, W) in [0, 1]."""
        return torch.sigmoid(selection_logits(self.selector, self.config, images)[:, 0])

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits of the softly masked images, and the masks."""
        mask = self.mask(images)
        return classify_masked(self.classifier, images, mask, self.fill), mask

    @torch.no_grad()
    @torch.no_grad()
    def explain(
        self, images: Tensor, target: int | Tensor | None = None, regions: Tensor | None = None
    ) -> Explanation:
        """Predict from the softly masked images; ``keep`` is the soft mask itself (``regions`` are not used)."""
        started = time.perf_counter()
        logits, mask = self(images)
        return selection_explanation(self.kind, logits.softmax(-1), mask, mask, target, started)
