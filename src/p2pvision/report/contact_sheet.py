"""Contact sheets: a grid of images with object-mask outlines, region boundaries and captions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

# Regions drawn on the semi-synthetic contact sheets (the demo's partition).
SHEET_PARTITION: dict[str, Any] = {"name": "slic", "n_segments": 50, "compactness": 20.0}
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


def write_sample_sheet(
    samples: Sequence[dict], classes: Sequence[str], has_masks: bool, path: str | os.PathLike[str]
) -> Path:
    """A PNG of up to 32 data set samples (dicts with image, label, optional mask) resized to 96 x 96, with mask
    outlines and class names; returns its resolved path."""
    from p2pvision.cache import atomic_path
    from p2pvision.data.transforms import JointResize

    resize = JointResize((96, 96))
    shown = [resize(s) for s in samples[:32]]
    images = np.stack([(s["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for s in shown])
    masks = np.stack([s["mask"].numpy() for s in shown]) if has_masks else None
    captions = [classes[s["label"]] for s in shown]
    with atomic_path(path) as tmp:
        contact_sheet(images, masks, None, captions, scale=1).save(tmp)
    return Path(path).resolve()


def write_contact_sheet(config, task: str, split: str, out: Path, count: int = 32, root: Path | None = None) -> Path:
    """A PNG of the first ``count`` images of a split of the semi-synthetic data set (``config``: a
    ``SemiSyntheticConfig``): object mask outlines (yellow), SLIC boundaries, labels."""
    import torch

    from p2pvision.cache import atomic_path
    from p2pvision.data.builtin import SemiSyntheticDataset
    from p2pvision.regions.partition import make_partitioner, partition_batch

    dataset = SemiSyntheticDataset(split, task, config, root=root)
    count = min(count, len(dataset))
    images = np.array(dataset.arrays.images[:count])
    partitioner = make_partitioner(**SHEET_PARTITION)
    regions = partition_batch(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, partitioner).numpy()
    data = dataset.data
    captions = [
        f"{data.object_classes[o]} | {data.scene_classes[s]}"
        for o, s in zip(dataset.arrays.object_labels[:count], dataset.arrays.scene_labels[:count])
    ]
    sheet = contact_sheet(images, np.asarray(dataset.arrays.object_masks[:count]), regions, captions, scale=3)
    with atomic_path(out) as tmp:
        sheet.save(tmp)
    return out
