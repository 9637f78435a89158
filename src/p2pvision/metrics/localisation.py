"""Localisation against ground-truth masks: mask precision, IoU and pixel average precision (PxAP).

All functions take batches: keep masks / scores (B,H,W) and ground truth (B,H,W) bool. Higher is better.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_precision(keep: Tensor, relevant: Tensor) -> Tensor:
    """Per image ``|keep & relevant| / |keep|``; 0 for an empty keep mask (P2P's localisation metric)."""
    kept = keep.flatten(1).sum(1)
    hits = (keep & relevant).flatten(1).sum(1)
    return torch.where(kept > 0, hits / kept.clamp(min=1), torch.zeros_like(kept, dtype=torch.float32))


def mask_iou(keep: Tensor, relevant: Tensor) -> Tensor:
    """Per image intersection over union; 0 when both masks are empty."""
    union = (keep | relevant).flatten(1).sum(1)
    hits = (keep & relevant).flatten(1).sum(1)
    return torch.where(union > 0, hits / union.clamp(min=1), torch.zeros_like(union, dtype=torch.float32))


class PixelAveragePrecision:
    """PxAP (Choe et al. 2020): area under the pixel precision-recall curve over a whole data set.

    Streaming: each batch adds histograms of the scores of relevant and irrelevant pixels over ``bins``
    equal-width bins of [0, 1] (thresholds 0, 1/bins, ...), so memory does not grow with the data set.
    """

    def __init__(self, bins: int = 100) -> None:
        self.bins = bins
        self.positive = torch.zeros(bins + 1, dtype=torch.float64)
        self.negative = torch.zeros(bins + 1, dtype=torch.float64)

    def update(self, scores: Tensor, relevant: Tensor) -> None:
        # The small offset keeps scores that sit on a threshold (e.g. 0.29 with 100 bins) in their own bin.
        index = (scores.detach().double().clamp(0, 1) * self.bins + 1e-9).floor().long().clamp(max=self.bins)
        index = index.cpu().flatten()
        relevant = relevant.cpu().flatten()
        self.positive += torch.bincount(index[relevant], minlength=self.bins + 1).double()
        self.negative += torch.bincount(index[~relevant], minlength=self.bins + 1).double()

    def compute(self) -> float:
        # Pixels with score >= threshold t_i are predicted relevant: cumulative sums from the top bin down.
        true_positive = self.positive.flip(0).cumsum(0).flip(0)
        predicted = true_positive + self.negative.flip(0).cumsum(0).flip(0)
        total = self.positive.sum()
        if total == 0:
            return 0.0
        precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.ones_like(predicted))
        recall = true_positive / total
        # Recall falls as the threshold rises; area = sum of precision * recall decrements (step rule).
        recall_next = torch.cat([recall[1:], recall.new_zeros(1)])
        return float(((recall - recall_next) * precision).sum())
