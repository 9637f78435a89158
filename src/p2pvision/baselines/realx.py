"""REAL-X (Jethani et al., AISTATS 2021): an amortised selector judged by a separately trained evaluator.

The *evaluator* is a classifier trained on images with random region masks (EVAL-X), so it can classify any
selection; it never sees the selector's masks. The *selector* (P2P's dense selector, pooled over the same regions
as P2P) gives each region a keep probability; it is trained with REINFORCE against the frozen evaluator: reward
``log p_eval(y | x_m) - lambda * max(kept - tau, 0)`` for masks ``m ~ Bernoulli(pi)``. At test time region k is
kept iff ``pi_k > 0.5`` and the evaluator predicts from the kept regions. The budget hinge (instead of REAL-X's
plain ``lambda * |m|``) puts the kept fraction near P2P's ``fixed_tau`` so that the two are compared at equal
sparsity.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from p2pvision.baselines.base import BASELINES, SelectorClassifier, regions_for, selection_explanation, selection_logits
from p2pvision.explanation import Explanation
from p2pvision.game import classify_masked
from p2pvision.models.backbones import ImageClassifier
from p2pvision.regions import region_areas, region_mean, region_to_pixel


@BASELINES.register()
class RealXModel(SelectorClassifier):
    """Selector over regions + evaluator (``classifier``); see the module docstring."""

    kind = "realx"
    card_summary = (
        "A REAL-X baseline (p2pvision; Jethani et al., AISTATS 2021): an amortised region selector trained with "
        "REINFORCE against an evaluator classifier that learned on random region masks."
    )

    @property
    def evaluator(self) -> ImageClassifier:
        return self.classifier

    def region_logits(self, images: Tensor, regions: Tensor) -> tuple[Tensor, Tensor]:
        """Selection logits (B, K) per region slot (0 in empty slots) and the slots' pixel counts (B, K)."""
        pixels = selection_logits(self.selector, self.config, images)
        logits = region_mean(pixels, regions, self.config.max_regions)[..., 0]
        return logits, region_areas(regions, self.config.max_regions).to(logits.dtype)

    def evaluate(self, images: Tensor, regions: Tensor, masks: Tensor) -> Tensor:
        """Evaluator logits (B*S, C) on the images with each of the S region masks (B, S, K) applied."""
        samples = masks.shape[1]
        keep = region_to_pixel(masks.bool(), regions).flatten(0, 1)
        return classify_masked(self.evaluator, images.repeat_interleave(samples, dim=0), keep, self.fill)

    @torch.no_grad()
    @torch.no_grad()
    def explain(
        self, images: Tensor, target: int | Tensor | None = None, regions: Tensor | None = None
    ) -> Explanation:
        """Keep regions with ``pi > 0.5``; the evaluator predicts from them."""
        started = time.perf_counter()
        regions = regions_for(images, self.config, regions)
        logits, areas = self.region_logits(images, regions)
        kept = (logits > 0) & (areas > 0)
        probabilities = self.evaluate(images, regions, kept[:, None]).softmax(-1)
        scores = torch.sigmoid(logits) * (areas > 0)
        return selection_explanation(self.kind, probabilities, region_to_pixel(kept, regions),
                                     region_to_pixel(scores, regions), target, started, regions, scores)  # fmt: skip
