"""Figures for papers: explanations of one image by one or several methods, with colour bars and full captions.

One row per image: the input (captioned with the explained class and the model's probability), then one panel per
method with its map over the dimmed image and its own colour bar. Signed maps (evidence for and against the class)
use a diverging map centred at 0; non-negative maps run from 0 to their maximum. Each panel's caption names the
method, the removal and the cost (model evaluations, seconds). :func:`save_figure` writes PNG at print resolution
and vector PDF/SVG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402
from torch import Tensor  # noqa: E402

from p2pvision.cache import atomic_path  # noqa: E402
from p2pvision.explanation import Explanation  # noqa: E402

FORMATS = ("png", "pdf", "svg")
PRINT_DPI = 300
RANKED = ("moxi",)  # methods whose scores are ranks in their greedy order, not values
_PANEL_INCHES = 2.6


def _pixels(image: Tensor) -> np.ndarray:
    """(3,H,W) float in [0,1] -> (H,W,3) float in [0,1]."""
    return image.detach().cpu().float().clamp(0, 1).permute(1, 2, 0).numpy()


def class_caption(explanation: Explanation, index: int, class_names: Sequence[str] | None,
                  probabilities: Tensor | None = None) -> str:  # fmt: skip
    """'tiger cat (p = 0.87)': the explained class of image ``index`` and the model's probability of it."""
    target = int(explanation.target[index])
    name = class_names[target] if class_names is not None and target < len(class_names) else f"class {target}"
    probabilities = probabilities if probabilities is not None else explanation.probabilities
    if probabilities is None:
        return name
    return f"{name} (p = {float(probabilities[index, target].detach()):.2f})"


def method_caption(explanation: Explanation, index: int) -> str:
    """'moxi · removal telea · 14x14 grid\\n1,234 evaluations · 12.3 s': what a panel shows and what it cost."""
    params: dict[str, Any] = explanation.params
    parts = [explanation.method]
    removal = params.get("removal")
    if isinstance(removal, dict) and removal.get("name"):
        parts.append(f"removal {removal['name']}")
    partition = params.get("partition") if removal is not None else None  # regions matter where they are removed
    if isinstance(partition, dict) and partition.get("name") == "grid" and "grid" in partition:
        rows, columns = np.broadcast_to(np.asarray(partition["grid"]), (2,))
        parts.append(f"{rows}x{columns} grid")
    elif isinstance(partition, dict) and partition.get("name"):
        parts.append(f"{partition['name']} regions")
    evaluations = float(explanation.evaluations[index]) if explanation.evaluations is not None else None
    cost = [f"{evaluations:,.0f} evaluation{'' if evaluations == 1 else 's'}"] if evaluations is not None else []
    cost.append(f"{explanation.seconds / max(len(explanation.predicted), 1):.1f} s")
    return " · ".join(parts) + "\n" + " · ".join(cost)


def _map_and_norm(pixel_map: np.ndarray, value: str | None) -> tuple[str, Normalize, str]:
    """The colour map, its normalisation and the colour bar's label for a pixel map (``value``: what the scores
    measure, e.g. 'log_odds', where the method says)."""
    low, high = float(pixel_map.min()), float(pixel_map.max())
    unit = f"Δ {value.replace('_', '-')}: " if value else ""
    if low < 0:
        limit = max(-low, high, 1e-12)
        return "RdBu_r", TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit), f"{unit}against ← 0 → for the class"
    return "inferno", Normalize(vmin=0.0, vmax=max(high, 1e-12)), f"{unit}importance"


def draw_explanation(axis: plt.Axes, image: Tensor, explanation: Explanation, index: int,
                     boundaries: bool = False, alpha: float = 0.6) -> None:  # fmt: skip
    """One panel: the map of image ``index`` over its dimmed greyscale image, a colour bar and the caption."""
    pixels = _pixels(image)
    axis.imshow(pixels.mean(-1), cmap="gray", vmin=0, vmax=1.6)  # dimmed, so the colours read
    if explanation.pixel_map is not None:
        values = explanation.pixel_map[index].detach().cpu().float().numpy()
        value = explanation.params.get("value")
        cmap, norm, label = _map_and_norm(values, value if isinstance(value, str) else None)
        if explanation.method in RANKED:
            label = "greedy order (chosen first = highest)"
        shown = axis.imshow(values, cmap=cmap, norm=norm, alpha=alpha)
        bar = axis.figure.colorbar(shown, ax=axis, orientation="horizontal", fraction=0.05, pad=0.03)
        bar.set_label(label, fontsize=7)
        if bar.solids is not None:
            bar.solids.set_alpha(1.0)  # the key in full colour, not blended like the overlay
        bar.ax.tick_params(labelsize=6)
    if explanation.keep is not None:  # methods that keep an input: outline what the classifier saw
        axis.contour(explanation.keep[index].detach().cpu().float().numpy(), levels=[0.5], colors="#ffc800",
                     linewidths=0.8)  # fmt: skip
    if boundaries and explanation.regions is not None:
        edges = find_boundaries(explanation.regions[index].cpu().numpy(), mode="inner")
        axis.imshow(np.ma.masked_where(~edges, edges), cmap="gray", vmin=0, vmax=1, alpha=0.5)
    axis.set_title(method_caption(explanation, index), fontsize=7.5)
    axis.axis("off")


def explanation_figure(
    images: Tensor,
    explanations: Sequence[Explanation],
    index: int = 0,
    class_names: Sequence[str] | None = None,
    probabilities: Tensor | None = None,
    boundaries: bool = False,
    title: str | None = None,
) -> Figure:
    """Image ``index`` of ``images`` (B,3,H,W) beside its explanation by each of ``explanations`` (one per method,
    all of the same images and target). ``probabilities`` (B,C): the model's on the full images, for the caption
    (else the first explanation's, where it carries them)."""
    if not explanations:
        raise ValueError("explanation_figure needs at least one explanation")
    columns = 1 + len(explanations)
    figure, axes = plt.subplots(1, columns, figsize=(_PANEL_INCHES * columns, _PANEL_INCHES + 0.9),
                                constrained_layout=True, squeeze=False)  # fmt: skip
    axes[0, 0].imshow(_pixels(images[index]))
    axes[0, 0].set_title(f"input\n{class_caption(explanations[0], index, class_names, probabilities)}", fontsize=8)
    axes[0, 0].axis("off")
    spacer = figure.colorbar(ScalarMappable(), ax=axes[0, 0], orientation="horizontal", fraction=0.05, pad=0.03)
    spacer.ax.set_visible(False)  # the same room as the colour bars below the maps, so all images align
    for axis, explanation in zip(axes[0, 1:], explanations, strict=True):
        draw_explanation(axis, images[index], explanation, index, boundaries)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def save_figure(figure: Figure, stem: str | os.PathLike[str], formats: Sequence[str] = FORMATS,
                dpi: int = PRINT_DPI) -> list[Path]:  # fmt: skip
    """Write ``figure`` as ``<stem>.<format>`` for each of ``formats`` (PNG at ``dpi``, PDF and SVG as vectors),
    each atomically; closes the figure. Returns the written paths."""
    written = []
    try:
        for suffix in formats:
            target = Path(f"{os.fspath(stem)}.{suffix}")
            with atomic_path(target) as tmp:
                figure.savefig(tmp, format=suffix, dpi=dpi)
            written.append(target)
    finally:
        plt.close(figure)
    return written
