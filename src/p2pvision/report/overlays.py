"""Heat-map overlays: an explanation map drawn over its image, with region boundaries and a caption."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries


def _to_uint8_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float()
        if image.ndim == 3 and image.shape[0] == 3:
            image = image.permute(1, 2, 0)
        image = (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (3,H,W) float in [0,1] or (H,W,3) uint8, got {image.dtype} {image.shape}")
    return image


def colourise(heat: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H,W) map -> (H,W,3) uint8. Non-negative maps use 'inferno' from 0 to their maximum; maps with negative
    values use the diverging 'RdBu_r' centred at 0 (red: evidence for the class, blue: against)."""
    values = heat.detach().cpu().float().numpy() if isinstance(heat, torch.Tensor) else np.asarray(heat, np.float32)
    if values.min() < 0:
        scale = max(float(np.abs(values).max()), 1e-12)
        unit, cmap = 0.5 + 0.5 * values / scale, colormaps["RdBu_r"]
    else:
        unit, cmap = values / max(float(values.max()), 1e-12), colormaps["inferno"]
    return (cmap(np.clip(unit, 0, 1))[..., :3] * 255).round().astype(np.uint8)


def heatmap_overlay(
    image: torch.Tensor | np.ndarray,
    heat: torch.Tensor | np.ndarray | None,
    regions: torch.Tensor | np.ndarray | None = None,
    alpha: float = 0.55,
    caption: str | None = None,
) -> Image.Image:
    """Blend the colourised ``heat`` (H,W) over ``image`` (no map: the image itself); optional region
    boundaries (white) and a caption below."""
    pixels = _to_uint8_image(image).astype(np.float32)
    blended = pixels
    if heat is not None:
        colours = colourise(heat).astype(np.float32)
        if colours.shape[:2] != pixels.shape[:2]:
            raise ValueError(f"heat map {colours.shape[:2]} and image {pixels.shape[:2]} differ in size")
        blended = (1 - alpha) * pixels + alpha * colours
    if regions is not None:
        labels = regions.cpu().numpy() if isinstance(regions, torch.Tensor) else np.asarray(regions)
        edges = find_boundaries(labels, mode="inner")
        blended[edges] = 0.6 * blended[edges] + 0.4 * 255
    picture = Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))
    if caption:
        bar = Image.new("RGB", (picture.width, 14), (32, 32, 32))
        ImageDraw.Draw(bar).text((2, 1), caption[: picture.width // 6], fill=(230, 230, 230))
        framed = Image.new("RGB", (picture.width, picture.height + 14))
        framed.paste(picture, (0, 0))
        framed.paste(bar, (0, picture.height))
        picture = framed
    return picture


def side_by_side(images: list[Image.Image], gap: int = 4) -> Image.Image:
    """Place pictures in a row on a dark background."""
    height = max(picture.height for picture in images)
    width = sum(picture.width for picture in images) + gap * (len(images) - 1)
    row = Image.new("RGB", (width, height), (32, 32, 32))
    x = 0
    for picture in images:
        row.paste(picture, (x, 0))
        x += picture.width + gap
    return row
