"""Plots of the benchmark report (matplotlib, Agg), returned as ``data:`` URIs so the HTML needs no other file."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402
from PIL import Image  # noqa: E402

CURVE_LABELS = {
    "rise_insertion": ("RISE insertion", "share of features inserted", "target probability"),
    "rise_deletion": ("RISE deletion", "share of features removed", "target probability"),
    "moxi_accuracy_insertion": ("MoXI insertion", "share of patches visible", "accuracy"),
    "moxi_accuracy_deletion": ("MoXI deletion", "share of patches masked", "accuracy"),
}


def png_uri(image: Image.Image) -> str:
    """A PIL image as a base64 PNG ``data:`` URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_uri(figure: plt.Figure) -> str:
    """A matplotlib figure as a base64 PNG ``data:`` URI (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def curves_figure(curves: Mapping[str, Mapping[str, Sequence[Mapping[str, list[float]]]]]) -> str:
    """One panel per curve kind (RISE / MoXI, insertion / deletion); a line per method (mean over seeds, band
    of ± one standard deviation). ``curves[kind][method]`` lists the per-seed curves ``{"x": .., "y": ..}``."""
    kinds = [kind for kind in CURVE_LABELS if kind in curves] + sorted(set(curves) - set(CURVE_LABELS))
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.2), squeeze=False)
    for axis, kind in zip(axes[0], kinds):
        title, xlabel, ylabel = CURVE_LABELS.get(kind, (kind, "x", "value"))
        for method, seeds in curves[kind].items():
            x = np.asarray(seeds[0]["x"])
            values = np.asarray([seed["y"] for seed in seeds])
            mean = values.mean(0)
            line = axis.plot(x, mean, label=method, linewidth=1.5)[0]
            if len(values) > 1:
                std = values.std(0, ddof=1)
                axis.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        axis.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1))
        axis.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    return figure_uri(figure)


def accuracy_kept_figure(points: Mapping[str, Sequence[tuple[float, float, str]]]) -> str:
    """Accuracy vs. kept-pixel fraction: one line per method family (e.g. P2P over delta), points labelled;
    methods that see the full image sit at kept fraction 1."""
    figure, axis = plt.subplots(figsize=(5, 3.6))
    for family, values in points.items():
        values = sorted(values)
        kept, accuracy = [v[0] for v in values], [v[1] for v in values]
        axis.plot(kept, accuracy, marker="o", label=family)
        for x, y, label in values:
            if label:
                axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set(xlabel="kept pixel fraction (hard mask)", ylabel="accuracy", xlim=(0, 1.05))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure_uri(figure)


def _plain_number(value: float, _position: object = None) -> str:
    """Log-axis tick labels people read at a glance: 0.1, 1, 10, 1k, 20k."""
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def cost_figure(costs: Mapping[str, Mapping[str, float]]) -> str:
    """Bars per method, each labelled with its value: model evaluations per image and wall time relative to one
    plain forward pass (log axes with plain-number ticks)."""
    methods = list(costs)
    figure, axes = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(methods) + 3), 3.4), constrained_layout=True)
    for axis, key, label in zip(axes, ("evaluations", "forward_ratio"),
                                ("model evaluations per image", "time / one plain forward pass")):  # fmt: skip
        values = [costs[m].get(key, np.nan) for m in methods]
        if not any(np.isfinite(value) and value > 0 for value in values):
            axis.text(0.5, 0.5, f"{label}: not measured", ha="center", va="center", fontsize=8)
            axis.axis("off")
            continue
        bars = axis.bar(range(len(methods)), values, color="#4c72b0")
        axis.bar_label(bars, labels=["" if np.isnan(v) else _plain_number(float(f"{v:.2g}")) for v in values],
                       fontsize=7, padding=2)  # fmt: skip
        axis.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
        axis.set(ylabel=label, yscale="log")
        axis.yaxis.set_major_formatter(FuncFormatter(_plain_number))
        axis.yaxis.set_minor_formatter(NullFormatter())
        axis.margins(y=0.15)
        axis.grid(alpha=0.3, axis="y")
    return figure_uri(figure)


def histogram_figure(histograms: Mapping[str, Mapping[str, list[float]]]) -> str:
    """Distribution of the kept-pixel fraction per method (image counts per bin, first seed)."""
    figure, axis = plt.subplots(figsize=(5, 3.2))
    for method, histogram in histograms.items():
        edges = np.asarray(histogram["edges"])
        axis.stairs(histogram["counts"], edges, label=method)
    axis.set(xlabel="kept pixel fraction", ylabel="images", xlim=(0, 1))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    return figure_uri(figure)
