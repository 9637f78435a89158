"""Post-hoc selection: keep the top-scoring regions of an attribution (Grad-CAM, Shapley, MoXI...) of a classifier
on full images, as many as bring the kept area closest to a given fraction (P2P's, per image or fixed)."""

from __future__ import annotations

import torch
from torch import Tensor

from p2pvision.regions import region_areas, region_to_pixel


def top_regions_mask(scores: Tensor, regions: Tensor, fraction: float | Tensor) -> Tensor:
    """Bool keep mask (B, H, W): per image the k highest-scoring regions of ``regions`` (B, H, W), with k such
    that their area is closest to ``fraction`` (a float, or (B,)) of the image (ties: fewer regions).

    ``scores`` (B, K) score the K region slots; empty slots are never kept.
    """
    areas = region_areas(regions, scores.shape[1]).to(scores.device)
    order = scores.float().masked_fill(areas <= 0, float("-inf")).argsort(dim=1, descending=True, stable=True)
    covered = torch.cat([areas.new_zeros(len(areas), 1), areas.gather(1, order).cumsum(1)], dim=1).double()
    total = areas.sum(1, keepdim=True).double()
    budget = torch.as_tensor(fraction, dtype=torch.float64, device=scores.device).expand(len(areas)).view(-1, 1)
    count = (covered - budget * total).abs().argmin(dim=1, keepdim=True)  # first minimum: fewest regions
    ranks = torch.arange(order.shape[1], device=scores.device).expand_as(order)
    chosen = torch.zeros_like(areas, dtype=torch.bool).scatter(1, order, ranks < count)
    return region_to_pixel(chosen & (areas > 0), regions.to(scores.device))
