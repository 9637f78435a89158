"""Batched torch operations between pixels and regions.

A region map is an int64 tensor ``labels`` of shape (B, H, W) whose values index K region *slots*
(0..K-1); a slot no pixel points to is an empty region (area 0). Every function works on any device and
on any batch size without Python loops over images or regions: pixels are aggregated with
``scatter_add``/``bincount`` and regions are broadcast back with ``gather``.
"""

from __future__ import annotations

from typing import overload

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "num_regions",
    "region_adjacency",
    "region_areas",
    "region_mean",
    "region_sum",
    "region_to_pixel",
    "relabel_contiguous",
]


def _check_labels(labels: Tensor, num_slots: int | None = None) -> None:
    if labels.ndim != 3 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 tensor of shape (B, H, W), got {labels.dtype} {tuple(labels.shape)}")
    if num_slots is not None and labels.numel() > 0:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_slots:
            raise ValueError(
                f"labels must lie in [0, {num_slots - 1}] for {num_slots} region slots, got [{low}, {high}]"
            )


def region_areas(labels: Tensor, num_regions: int) -> Tensor:
    """Pixel count of each region slot: (B, H, W) labels -> (B, K) int64 (0 for empty slots)."""
    _check_labels(labels, num_regions)
    batch = labels.shape[0]
    offsets = torch.arange(batch, device=labels.device).view(batch, 1, 1) * num_regions
    counts = torch.bincount((labels + offsets).flatten(), minlength=batch * num_regions)
    return counts.view(batch, num_regions)


def region_sum(values: Tensor, labels: Tensor, num_regions: int) -> Tensor:
    """Sum of ``values`` (B, C, H, W) over the pixels of each region: -> (B, K, C); 0 for empty slots."""
    _check_labels(labels, num_regions)
    if values.ndim != 4 or values.shape[0] != labels.shape[0] or values.shape[2:] != labels.shape[1:]:
        raise ValueError(
            f"values must be (B, C, H, W) matching labels {tuple(labels.shape)}, got {tuple(values.shape)}"
        )
    batch, channels = values.shape[:2]
    index = labels.reshape(batch, 1, -1).expand(batch, channels, -1)
    sums = values.new_zeros(batch, channels, num_regions).scatter_add(2, index, values.reshape(batch, channels, -1))
    return sums.transpose(1, 2)


def region_mean(values: Tensor, labels: Tensor, num_regions: int) -> Tensor:
    """Mean of ``values`` (B, C, H, W) over the pixels of each region: -> (B, K, C); 0 for empty slots.

    Differentiable with respect to ``values`` (this is P2P's pixel-to-region pooling of selector outputs).
    """
    sums = region_sum(values, labels, num_regions)
    areas = region_areas(labels, num_regions).to(sums.dtype).clamp_min(1)
    return sums / areas.unsqueeze(-1)


def region_to_pixel(region_values: Tensor, labels: Tensor, *, region_dim: int = -1) -> Tensor:
    """Give every pixel the value of its region.

    The region axis (size K) of ``region_values`` is ``region_dim``: the last axis by default, so per-region
    scores (B, K) -> (B, H, W) and coalitions (B, S, K) -> (B, S, H, W); for per-region features (B, K, C)
    such as the output of :func:`region_mean`, pass ``region_dim=1`` to get (B, C, H, W). Any dtype works, so a
    bool coalition over regions becomes a bool pixel mask.
    """
    _check_labels(labels)
    if region_values.ndim not in (2, 3) or region_values.shape[0] != labels.shape[0]:
        raise ValueError(
            f"region_values must be (B, K) or (B, S, K) / (B, K, C) with B={labels.shape[0]}, "
            f"got {tuple(region_values.shape)}"
        )
    values = region_values.movedim(region_dim, -1)
    num_slots = values.shape[-1]
    _check_labels(labels, num_slots)
    batch, height, width = labels.shape
    if values.ndim == 2:
        return values.gather(1, labels.reshape(batch, -1)).view(batch, height, width)
    rows = values.shape[1]
    index = labels.reshape(batch, 1, -1).expand(batch, rows, -1)
    return values.gather(2, index).view(batch, rows, height, width)


def region_adjacency(labels: Tensor, num_regions: int, connectivity: int = 4) -> Tensor:
    """Which regions touch: (B, H, W) labels -> (B, K, K) bool, symmetric, with a False diagonal.

    Two regions are adjacent when a pixel of one is a 4-neighbour (``connectivity=4``) or an 8-neighbour
    (``connectivity=8``) of a pixel of the other. Memory is B*K*K, so this is meant for superpixel-sized K.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    _check_labels(labels, num_regions)
    batch = labels.shape[0]
    pairs = [(labels[:, :, :-1], labels[:, :, 1:]), (labels[:, :-1, :], labels[:, 1:, :])]
    if connectivity == 8:
        pairs += [(labels[:, :-1, :-1], labels[:, 1:, 1:]), (labels[:, :-1, 1:], labels[:, 1:, :-1])]
    base = torch.arange(batch, device=labels.device).view(batch, 1, 1) * (num_regions * num_regions)
    flat_index = torch.cat([(base + a * num_regions + b).flatten() for a, b in pairs + [(b, a) for a, b in pairs]])
    adjacency = torch.zeros(batch * num_regions * num_regions, dtype=torch.bool, device=labels.device)
    adjacency[flat_index] = True
    adjacency = adjacency.view(batch, num_regions, num_regions)
    adjacency.diagonal(dim1=1, dim2=2).fill_(False)
    return adjacency


def num_regions(labels: Tensor) -> Tensor:
    """Number of regions per image, (B,) int64, for contiguous labels (largest label + 1)."""
    _check_labels(labels)
    return labels.amax(dim=(1, 2)) + 1


@overload
def relabel_contiguous(labels: Tensor) -> Tensor: ...
@overload
def relabel_contiguous(labels: np.ndarray) -> np.ndarray: ...
def relabel_contiguous(labels: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Renumber each image's labels to 0..K-1, keeping their order; returns the same type it gets.

    The last two axes are one image (H, W); leading axes index images, each relabelled on its own.
    Works on torch tensors (any device) and NumPy integer arrays (relabelled in NumPy, so that partitioners running
    in threads stay out of torch's thread pool). Labels that span at most ``4 * H * W`` values (every region map:
    labels < max_regions) use a presence table per image: mark the labels
    present (``scatter_``), number them with a cumulative sum and look every pixel up (``gather``), O(H*W) with
    no sort; this is 5-10x faster than a per-row sort on CPU for a batch of 64 label maps, and one to two orders
    of magnitude faster than ``torch.unique(return_inverse=True)`` (and, in NumPy, several times faster than
    ``np.unique(return_inverse=True)`` on one 224 px map). Sparser labels (a wider span) use a per-row sort instead
    (``np.unique`` for arrays), whose memory does not grow with the span.
    """
    if isinstance(labels, np.ndarray):
        if labels.ndim < 2 or labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers of shape (..., H, W), got {labels.dtype} {labels.shape}")
        if labels.size == 0:
            return labels.astype(np.int64)
        rows = labels.reshape(-1, labels.shape[-2] * labels.shape[-1])
        low, high = int(rows.min()), int(rows.max())
        if labels.dtype != np.uint64 and high - low + 1 <= 4 * rows.shape[1]:  # as for tensors (np.unique sorts)
            ranks = np.empty(rows.shape, dtype=np.int64)
            for row, out in zip(rows.astype(np.int64) - low, ranks):
                seen = np.zeros(high - low + 1, dtype=bool)
                seen[row] = True
                np.take(np.cumsum(seen, dtype=np.int64) - 1, row, out=out)
            return ranks.reshape(labels.shape)
        relabelled = [np.unique(row, return_inverse=True)[1].reshape(-1) for row in rows]
        return np.array(relabelled, dtype=np.int64).reshape(labels.shape)
    if labels.ndim < 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integers of shape (..., H, W), got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() == 0:
        return labels.to(torch.int64)
    label_rows = labels.to(torch.int64).reshape(-1, labels.shape[-2] * labels.shape[-1])
    low, high = (int(value) for value in torch.aminmax(label_rows))
    span = high - low + 1
    if span <= 4 * label_rows.shape[1]:
        shifted = label_rows - low
        present = torch.zeros(label_rows.shape[0], span, dtype=torch.uint8, device=labels.device)
        rank = present.scatter_(1, shifted, 1).cumsum(dim=1, dtype=torch.int64).sub_(1)
        return rank.gather(1, shifted).reshape(labels.shape)
    sorted_rows, order = label_rows.sort(dim=1)
    starts_new_label = (sorted_rows[:, 1:] != sorted_rows[:, :-1]).to(torch.int64)
    rank = torch.cat([torch.zeros_like(label_rows[:, :1]), starts_new_label.cumsum(dim=1)], dim=1)
    return torch.empty_like(label_rows).scatter_(1, order, rank).reshape(labels.shape)
