"""Pixel keep masks: binarising a soft mask, the top share of a map, and a mask's precision and IoU against a
ground-truth mask. Shared by the baselines, training and the localisation metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def top_share_mask(maps: Tensor, share: float | Tensor) -> Tensor:
    """Bool (B,H,W): the ``share`` (a float or per image (B,)) of pixels with the highest values (ties: first)."""
    flat = maps.flatten(1)
    count = torch.as_tensor(share, dtype=torch.float64, device=maps.device).expand(len(maps)) * flat.shape[1]
    order = flat.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1], device=maps.device).expand_as(order))
    return (rank < count.round().long().view(-1, 1)).view_as(maps)


def hard_keep(keep: Tensor) -> Tensor:
    """A keep mask (B,H,W) as bool. A soft mask (values in [0, 1]) keeps its own mass: the ``mean(m)`` share of its
    highest pixels. So a soft mask's kept fraction is its mean value, and localisation scores where it puts that
    mass (a 0.5 threshold keeps nothing when a budget spreads the mask thinly, as trained soft masks do)."""
    if keep.dtype == torch.bool:
        return keep
    return top_share_mask(keep, keep.flatten(1).double().mean(1))


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
