"""Figures of INV cluster maps: an overview (per layer: Grad-CAM and the kept cluster maps) and the 2-d
channel embedding coloured by cluster."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from p2pvision.report.overlays import heatmap_overlay, side_by_side


def _upsampled(layer_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    picture = Image.fromarray(np.asarray(layer_map, dtype=np.float32))
    return np.asarray(picture.resize((size[1], size[0]), Image.Resampling.BILINEAR))


def overview_figure(result, pixels: np.ndarray) -> Image.Image:
    """One row per layer: the image, the layer's Grad-CAM, then each kept cluster map with its weight."""
    size = pixels.shape[:2]
    rows = []
    for layer in result.layers:
        tiles = [
            heatmap_overlay(pixels, None, caption=f"{layer.layer}: {result.target_name}"),
            heatmap_overlay(pixels, _upsampled(layer.gradcam, size), caption="Grad-CAM (guided weights)"),
        ]
        for cluster in layer.kept_clusters:
            caption = f"C{cluster.cluster} {cluster.weight:.1f}% ({len(cluster.channels)} ch)"
            tiles.append(heatmap_overlay(pixels, cluster.pixel_map, caption=caption))
        rows.append(side_by_side(tiles))
    width = max(row.width for row in rows)
    sheet = Image.new("RGB", (width, sum(row.height for row in rows) + 4 * (len(rows) - 1)), (32, 32, 32))
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 4
    return sheet


def embedding_figure(result, path: str | os.PathLike[str]) -> None:
    """Scatter plots of each layer's channel embedding, coloured by cluster (dropped clusters hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    count = max(len(result.layers), 1)
    figure, axes = plt.subplots(1, count, figsize=(3.6 * count, 3.4), squeeze=False)
    for axis, layer in zip(axes[0], result.layers):
        kept = {cluster.cluster: cluster.kept for cluster in layer.clusters}
        for label in np.unique(layer.assignment):
            points = layer.embedding[layer.assignment == label]
            colour = plt.cm.tab10(int(label) % 10)
            face = colour if kept.get(int(label), False) else "none"
            axis.scatter(points[:, 0], points[:, 1], s=14, facecolors=face, edgecolors=colour, label=f"C{label}")
        chosen = len(layer.clusters)
        axis.set_title(f"{layer.layer}: {layer.kept_channels.size} channels, {chosen} clusters", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        if layer.clusters:
            axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
