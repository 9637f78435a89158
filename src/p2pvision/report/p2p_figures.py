"""Pictures of P2P explanations: the kept regions (what the classifier saw) and the region relationships."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from p2pvision.cache import atomic_path  # noqa: E402
from p2pvision.explanation import Explanation  # noqa: E402


def kept_overlay(image: np.ndarray, keep: np.ndarray, regions: np.ndarray, dim: float = 0.25) -> np.ndarray:
    """(H,W,3) uint8: kept regions as they are, the rest dimmed to ``dim``, region boundaries in white."""
    out = image.astype(np.float32)
    out[~keep] *= dim
    edges = find_boundaries(regions, mode="inner")
    out[edges] = 0.6 * out[edges] + 0.4 * 255
    outline = find_boundaries(keep.astype(np.uint8), mode="inner")
    out[outline] = (255, 200, 0)
    return out.clip(0, 255).astype(np.uint8)


def embedding_colours(embeddings: np.ndarray, regions: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """(H,W,3) float: every region coloured by its embedding (min-max scaled to RGB over kept regions)."""
    used = np.unique(regions)
    reference = embeddings[used[kept[used]]] if kept[used].any() else embeddings[used]
    low, high = reference.min(0), reference.max(0)
    colours = (embeddings[:, :3] - low[:3]) / np.maximum(high[:3] - low[:3], 1e-8)
    if colours.shape[1] < 3:
        colours = np.pad(colours, ((0, 0), (0, 3 - colours.shape[1])), constant_values=0.5)
    picture = colours.clip(0, 1)[regions]
    picture[~kept[regions]] *= 0.25
    return picture


def explanation_figure(
    image: np.ndarray,
    explanation: Explanation,
    index: int,
    title: str,
    path: str | os.PathLike[str],
    class_names: Sequence[str],
) -> Path:
    """A 4-panel PNG of image ``index`` of a P2P explanation: input, kept regions, regions coloured by embedding,
    correlation of kept regions."""
    result = explanation[index].cpu()
    confidences, kept_fractions = result.confidence, result.kept_fraction
    if result.regions is None or result.keep is None or kept_fractions is None:
        raise ValueError(f"a '{result.method}' explanation lacks the regions and keep mask of P2P")
    if result.scores is None or confidences is None:
        raise ValueError(f"a '{result.method}' explanation lacks the region scores and probabilities of P2P")
    regions = result.regions[0].numpy()
    keep = result.keep[0].numpy()
    kept = (result.scores[0] > 0.5).numpy()
    label = class_names[int(result.predicted[0])]
    confidence, tau = float(confidences[0]), float(result.extras["tau"][0])
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.6), constrained_layout=True)
    axes[0].imshow(image)
    axes[0].set_title(title, fontsize=9)
    axes[1].imshow(kept_overlay(image, keep, regions))
    axes[1].set_title(
        f"{label} ({confidence:.2f}); tau {tau:.2f}, kept {float(kept_fractions[0]):.0%}",
        fontsize=9,
    )
    axes[2].imshow(embedding_colours(result.extras['embeddings'][0].numpy(), regions, kept))
    axes[2].set_title("regions coloured by embedding", fontsize=9)
    chosen = np.flatnonzero(kept)
    if len(chosen):
        matrix = result.extras['correlation'][0].numpy()[np.ix_(chosen, chosen)]
        shown = axes[3].imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
        axes[3].set_xticks(range(len(chosen)), chosen, fontsize=6, rotation=90)
        axes[3].set_yticks(range(len(chosen)), chosen, fontsize=6)
        figure.colorbar(shown, ax=axes[3], fraction=0.046)
    else:
        axes[3].text(0.5, 0.5, "no region kept", ha="center", va="center", fontsize=10)
        axes[3].axis("off")
    axes[3].set_title("correlation of kept regions", fontsize=9)
    for axis in axes[:3]:
        axis.axis("off")
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    plt.close(figure)
    return path
