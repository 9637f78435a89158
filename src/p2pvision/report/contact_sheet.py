"""Contact sheets: a grid of images with object-mask outlines, region boundaries and captions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

MASK_COLOUR = np.array([255, 230, 0], np.uint8)  # yellow outline of the ground-truth mask
REGION_COLOUR = np.array([255, 255, 255], np.uint8)  # white region boundaries


def annotate(
    image: np.ndarray, mask: np.ndarray | None = None, regions: np.ndarray | None = None, scale: int = 2
) -> np.ndarray:
    """Upscale an (H,W,3) uint8 image by ``scale`` (nearest) and draw region boundaries and the mask outline."""
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1).copy()
    if regions is not None:
        edges = find_boundaries(np.kron(regions, np.ones((scale, scale), regions.dtype)), mode="inner")
        big[edges] = (0.5 * big[edges] + 0.5 * REGION_COLOUR).astype(np.uint8)
    if mask is not None:
        outline = find_boundaries(np.kron(mask.astype(np.uint8), np.ones((scale, scale), np.uint8)), mode="inner")
        big[outline] = MASK_COLOUR
    return big


def contact_sheet(
    images: np.ndarray,
    masks: np.ndarray | None = None,
    regions: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
    columns: int = 8,
    scale: int = 2,
) -> Image.Image:
    """Tile (N,H,W,3) uint8 images into a sheet; optional (N,H,W) masks and region maps and N captions."""
    n, height, width = images.shape[:3]
    caption_height = 14 if captions is not None else 0
    rows = -(-n // columns)
    tile_h, tile_w = height * scale + caption_height, width * scale
    sheet = Image.new("RGB", (columns * (tile_w + 2), rows * (tile_h + 2)), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        tile = annotate(
            np.asarray(images[i]),
            None if masks is None else np.asarray(masks[i]),
            None if regions is None else np.asarray(regions[i]),
            scale,
        )
        x, y = (i % columns) * (tile_w + 2), (i // columns) * (tile_h + 2)
        sheet.paste(Image.fromarray(tile), (x, y))
        if captions is not None:
            draw.text((x + 2, y + height * scale + 1), captions[i][: tile_w // 6], fill=(230, 230, 230))
    return sheet
