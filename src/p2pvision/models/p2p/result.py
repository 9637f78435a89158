"""The typed result of ``P2PModel.explain``: the prediction and the exact input it was made from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class P2PExplanation:
    """A batch of P2P predictions with their explanations (all tensors on the CPU).

    ``keep_mask`` is the hard pixel mask the classifier saw (True = kept); ``region_probs`` are
    ``sigmoid(mu_k)`` per region slot (0 for empty slots), ``regions`` the label map the regions come from,
    ``embeddings`` the 3-d region embeddings and ``correlation`` the region correlation matrix derived from
    ``Sigma = E E^T + jitter I``. ``evaluations`` counts head + classifier runs spent on each image.
    """

    predicted: Tensor  # (B,) int64
    probabilities: Tensor  # (B, C)
    tau: Tensor  # (B,)
    keep_mask: Tensor  # (B, H, W) bool
    kept_fraction: Tensor  # (B,)
    region_probs: Tensor  # (B, K)
    regions: Tensor  # (B, H, W) int64
    embeddings: Tensor  # (B, K, D)
    correlation: Tensor  # (B, K, K)
    evaluations: Tensor  # (B,)
    delta: float
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.predicted)

    @property
    def confidence(self) -> Tensor:
        return self.probabilities.gather(1, self.predicted[:, None]).squeeze(1)

    @property
    def kept_regions(self) -> Tensor:
        """(B, K) bool: regions the classifier saw."""
        return self.region_probs > 0.5

    def record(self, index: int) -> dict[str, Any]:
        """A JSON-serialisable summary of one image."""
        slots = int(self.regions[index].max()) + 1
        kept = torch.nonzero(self.kept_regions[index, :slots]).flatten().tolist()
        return {
            "class": self.class_names[int(self.predicted[index])],
            "class_index": int(self.predicted[index]),
            "confidence": round(float(self.confidence[index]), 6),
            "tau": round(float(self.tau[index]), 4),
            "delta": self.delta,
            "kept_fraction": round(float(self.kept_fraction[index]), 6),
            "kept_regions": kept,
            "num_regions": slots,
            "region_probs": [round(float(p), 6) for p in self.region_probs[index, :slots]],
            "evaluations": int(self.evaluations[index]),
        }
