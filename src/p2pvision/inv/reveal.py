"""Partial-reveal images: the image shown only where a cluster map is in its top q percent.

INV shows people an image revealed step by step at q = 2, 4.5, 8, 13, 20, 30 percent of its pixels, ranked by
a cluster map. Ties are broken by pixel position (row-major), so the masks are exact and nested; pixels where
the map is 0 are never revealed (a map whose support is smaller than q percent reveals its whole support).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

REVEAL_PERCENTS: tuple[float, ...] = (2.0, 4.5, 8.0, 13.0, 20.0, 30.0)
FILL = (128, 128, 128)


def reveal_masks(pixel_map: np.ndarray, percents: Sequence[float] = REVEAL_PERCENTS) -> np.ndarray:
    """(S, H, W) bool masks, one per percentage: the top ``round(q / 100 * H * W)`` pixels with a positive value."""
    values = np.asarray(pixel_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"pixel_map must be (H, W), got shape {values.shape}")
    if any(not 0 <= q <= 100 for q in percents):
        raise ValueError(f"reveal percentages must lie in [0, 100], got {list(percents)}")
    flat = values.ravel()
    ranking = np.argsort(-flat, kind="stable")
    positive = int((flat > 0).sum())
    masks = np.zeros((len(percents), flat.size), dtype=bool)
    for step, q in enumerate(percents):
        count = min(int(round(q / 100.0 * flat.size)), positive)
        masks[step, ranking[:count]] = True
    return masks.reshape(len(percents), *values.shape)


def reveal_image(image: np.ndarray, mask: np.ndarray, fill: Sequence[int] = FILL) -> np.ndarray:
    """``image`` (H, W, 3) uint8 where ``mask`` is True, ``fill`` elsewhere."""
    shown = np.empty_like(image)
    shown[...] = np.asarray(fill, dtype=image.dtype)
    shown[mask] = image[mask]
    return shown
