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


def region_centres(regions: np.ndarray, labels: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(x, y) centroid of each region label in ``labels``."""
    rows, columns = np.mgrid[: regions.shape[0], : regions.shape[1]]  # row and column of every pixel
    return {int(label): (float(columns[regions == label].mean()), float(rows[regions == label].mean()))
            for label in labels if (regions == label).any()}  # fmt: skip


def explanation_figure(
    image: np.ndarray,
    explanation: Explanation,
    index: int,
    title: str,
    path: str | os.PathLike[str],
    class_names: Sequence[str],
    dpi: int = 200,
) -> Path:
    """A 4-panel PNG of image ``index`` of a P2P explanation, each panel readable at its printed size: the input;
    the kept regions (what the classifier saw) with the prediction, its probability, tau and the kept share; the
    selection probability of every region with its colour bar; the correlation of the kept regions (numbered as
    on the kept panel) with its colour bar."""
    result = explanation[index].cpu()
    confidences, kept_fractions = result.confidence, result.kept_fraction
    if result.regions is None or result.keep is None or kept_fractions is None:
        raise ValueError(f"a '{result.method}' explanation lacks the regions and keep mask of P2P")
    if result.scores is None or confidences is None:
        raise ValueError(f"a '{result.method}' explanation lacks the region scores and probabilities of P2P")
    factor = max(1, 256 // max(image.shape[:2]))  # small images drawn larger, so region outlines stay thin
    image, regions, keep = (np.kron(array, np.ones((factor, factor) + (1,) * (array.ndim - 2), array.dtype))
                            for array in (image, result.regions[0].numpy(), result.keep[0].numpy()))  # fmt: skip
    scores = result.scores[0].numpy()
    kept = [int(region) for region in np.unique(regions[keep])]  # p > 0.5, or the top region of a near-empty mask
    label = class_names[int(result.predicted[0])]
    confidence, tau = float(confidences[0]), float(result.extras["tau"][0])
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.9), constrained_layout=True)
    axes[0].imshow(image)
    axes[0].set_title(f"input\n{title}", fontsize=10)
    axes[1].imshow(kept_overlay(image, keep, regions))
    axes[1].set_title(f"kept {float(kept_fractions[0]):.0%} of the pixels (tau {tau:.2f})\n"
                      f"prediction: {label} (p = {confidence:.2f})", fontsize=10)  # fmt: skip
    numbers = {region: number for number, region in enumerate(kept, start=1)}
    if len(kept) <= 20:  # numbered so the correlation panel can name them
        for region, (x, y) in region_centres(regions, kept).items():
            axes[1].text(x, y, str(numbers[region]), color="black", fontsize=7, ha="center", va="center",
                         bbox={"boxstyle": "round,pad=0.15", "fc": "#ffc800", "ec": "none", "alpha": 0.85})  # fmt: skip
    shown = axes[2].imshow(scores[regions], cmap="viridis", vmin=0, vmax=1)
    axes[2].contour(keep.astype(float), levels=[0.5], colors="white", linewidths=1.0)
    axes[2].set_title("selection probability of each region\n(white outline: kept)", fontsize=10)
    bar = figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02)
    bar.set_label("sigmoid(mu)", fontsize=8)
    if len(kept):
        matrix = result.extras["correlation"][0].numpy()[np.ix_(kept, kept)]
        shown = axes[3].imshow(matrix, vmin=-1, vmax=1, cmap="RdBu_r")
        step = max(1, int(np.ceil(len(kept) / 12)))  # at most 12 tick labels, so they stay legible
        ticks = list(range(0, len(kept), step))
        axes[3].set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
        axes[3].set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=8)
        axes[3].set_xlabel("kept region", fontsize=8)
        bar = figure.colorbar(shown, ax=axes[3], fraction=0.046, pad=0.02)
        bar.set_label("correlation", fontsize=8)
    else:
        axes[3].text(0.5, 0.5, "no region kept", ha="center", va="center", fontsize=10)
        axes[3].axis("off")
    axes[3].set_title("correlation of the kept regions\n(of Sigma = E E^T + jitter I)", fontsize=10)
    for axis in axes[:3]:
        axis.axis("off")
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi)
    plt.close(figure)
    return path


def frontier_figure(series: dict[str, dict[str, dict[str, float]]], title: str = "") -> plt.Figure:
    """The accuracy-sparsity frontier of P2P evaluations: accuracy and localisation precision against the hard kept
    fraction. ``series`` maps a model's label to its settings (``{"δ 0.9": {"accuracy": .., "kept_fraction": ..,
    ...}, "τ 0.1": {...}}``); each model is one line through its points sorted by kept fraction, each point labelled
    with its setting and, where any, its share of empty masks."""
    rows = [row for settings in series.values() for row in settings.values()]
    panels = [key for key in ("accuracy", "precision") if all(key in row for row in rows)]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), constrained_layout=True,
                                squeeze=False)  # fmt: skip
    colours = [plt.get_cmap("tab10")(index) for index in range(10)]
    for panel, (axis, key) in enumerate(zip(axes[0], panels, strict=True)):
        labels: dict[tuple[float, float], list[str]] = {}  # settings at the same point share one label
        for colour, (name, settings) in zip(colours, series.items()):
            ordered = sorted(settings.items(), key=lambda item: item[1]["kept_fraction"])
            kept = [row["kept_fraction"] for _, row in ordered]
            values = [row[key] for _, row in ordered]
            axis.plot(kept, values, marker="o", color=colour, label=name if panel == 0 else None)
            for (setting, row), x, y in zip(ordered, kept, values, strict=True):
                empty = row.get("empty_masks", 0.0)
                labels.setdefault((round(x, 3), round(y, 3)), []).append(
                    setting + (f" ({empty:.0%} empty)" if empty else ""))  # fmt: skip
        for number, ((x, y), names) in enumerate(labels.items()):  # labels alternate below and above their points
            offset = (6, -6 - 8 * len(names)) if number % 2 == 0 else (6, 4)
            axis.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=offset, fontsize=7)
        lowest = min(row[key] for row in rows)
        axis.set(xlabel="hard kept fraction of the pixels", ylabel=key, xlim=(0, 1.02),
                 ylim=(0, 1.02) if key != "accuracy" else (max(0.0, lowest - 0.05), 1.0))  # fmt: skip
        axis.grid(alpha=0.3)
    if len(series) > 1:
        figure.legend(loc="outside lower center", fontsize=7, ncols=min(2, len(series)))
    if title:
        figure.suptitle(title, fontsize=9)
    return figure
