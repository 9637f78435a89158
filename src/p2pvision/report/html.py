"""The benchmark's HTML report: one self-contained file (inline CSS, plots and images as ``data:`` URIs, no
script, nothing fetched) with the results tables, insertion/deletion and accuracy curves, accuracy vs. kept
fraction over delta, cost per method, a grid of example images with every method's overlay, and the settings of
every score (removal, partition, image count)."""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from p2pvision.cache import atomic_path
from p2pvision.report.contact_sheet import annotate
from p2pvision.report.examples import load_examples
from p2pvision.report.html_plots import (
    accuracy_kept_figure,
    cost_figure,
    curves_figure,
    histogram_figure,
    png_uri,
)
from p2pvision.report.overlays import heatmap_overlay
from p2pvision.report.tables import arrow, directions_of, format_value, groups_of, pivot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.best { font-weight: bold; background: #eef6ee; }
.grid td, .grid th { text-align: center; font-size: 0.75em; }
.grid img { width: 128px; image-rendering: pixelated; display: block; }
figure { display: inline-block; margin: 6px 12px 6px 0; } figcaption { font-size: 0.8em; color: #555; }
pre { font-size: 0.75em; background: #f6f6f6; padding: 6px; white-space: pre-wrap; margin: 0; }
.note { color: #555; font-size: 0.85em; }
.settings td, .settings th { text-align: left; white-space: normal; } .wide { overflow-x: auto; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _best(values: dict[str, float], higher: bool) -> set[str]:
    finite = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if len(set(finite.values())) < 2:
        return set()
    target = max(finite.values()) if higher else min(finite.values())
    return {k for k, v in finite.items() if v == target}


def results_table(results: dict[str, Any], dataset: str, group: str) -> str:
    """HTML table of one data set and group of metrics: methods x metrics, mean ± std over seeds, the best value
    per column bold (unless all are equal)."""
    methods, metrics, cells = pivot(results["table"], dataset, group)
    directions = directions_of(cells)
    header = "".join(f"<th>{_e(m)} {arrow(directions[m])}</th>" for m in metrics)
    best = {
        metric: _best({method: cells[(method, metric)]["mean"] for method in methods if (method, metric) in cells},
                      directions[metric])
        for metric in metrics
    }  # fmt: skip
    rows = []
    for method in methods:
        cols = []
        for metric in metrics:
            row = cells.get((method, metric))
            text = format_value(row["mean"], row["std"], row["seeds"]) if row else "—"
            cols.append(f"<td{' class=best' if method in best[metric] else ''}>{_e(text)}</td>")
        rows.append(f"<tr><td>{_e(method)}</td>{''.join(cols)}</tr>")
    table = f"<table><tr><th>method</th>{header}</tr>{''.join(rows)}</table>"
    return f"<h3>{_e(group)}</h3><div class=wide>{table}</div>"


def _figures(results: dict[str, Any], dataset: str) -> list[tuple[str, str]]:
    """(caption, data URI) of every plot of one data set."""
    cells = [cell for cell in results["cells"] if cell["dataset"] == dataset]
    curves: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for cell in cells:
        for kind, curve in cell.get("curves", {}).items():
            curves[kind][cell["method"]].append(curve)
    figures = []
    rise = {k: v for k, v in curves.items() if k.startswith("rise")}
    moxi = {k: v for k, v in curves.items() if k.startswith("moxi")}
    if rise:
        figures.append(("RISE insertion / deletion curves (mean ± std over seeds)", curves_figure(rise)))
    if moxi:
        figures.append(("MoXI accuracy curves (mean ± std over seeds)", curves_figure(moxi)))
    rows = {(row["method"], row["metric"]): row for row in results["table"] if row["dataset"] == dataset}
    points: dict[str, list] = defaultdict(list)
    for name, method in results["methods"].items():
        accuracy = rows.get((name, "accuracy"))
        if accuracy is None:
            continue
        kept = rows.get((name, "kept_fraction"))
        label = ",".join(f"{k}={v}" for k, v in method.get("variant", {}).items())
        if kept is not None:
            points[method.get("family", name)].append((kept["mean"], accuracy["mean"], label))
        elif method["kind"] != "explainer":  # explainers predict with the classifier they explain
            points[name].append((1.0, accuracy["mean"], "full image"))
    if any(kept < 1.0 for values in points.values() for kept, _, _ in values):
        figures.append(("Accuracy vs. kept pixel fraction (over delta for P2P)", accuracy_kept_figure(points)))
    first = [cell for cell in cells if cell["seed"] == cells[0]["seed"]]
    histograms = {cell["method"]: cell["kept_histogram"] for cell in first if "kept_histogram" in cell}
    if histograms:
        figures.append(("Distribution of the kept pixel fraction (first seed)", histogram_figure(histograms)))
    costs = {method: {key: rows[(method, key)]["mean"] for key in ("evaluations", "forward_ratio")
                      if (method, key) in rows} for method in dict.fromkeys(m for m, _ in rows)}  # fmt: skip
    costs = {method: cost for method, cost in costs.items() if cost}
    if costs:
        figures.append(("Cost per method (mean over seeds; log scale)", cost_figure(costs)))
    return figures


def _overlay(stored: dict[str, torch.Tensor], index: int) -> Image.Image:
    image = stored["images"][index].float() / 255
    if "keep" in stored:  # what an interpretable model saw: the rest dimmed, its map over the kept part
        image = image * (0.25 + 0.75 * stored["keep"][index].float().clamp(0, 1))
    heat = stored["pixel_map"][index].float() if "pixel_map" in stored else None
    return heatmap_overlay(image, heat)


def example_grid(results: dict[str, Any], dataset: str, out: Path) -> str:
    """HTML table: each example image (ground-truth outline in yellow) and every method's overlay (first seed),
    with the true and the predicted class."""
    cells = [c for c in results["cells"] if c["dataset"] == dataset]
    if not cells:
        return ""
    first = [c for c in cells if c["seed"] == cells[0]["seed"]]
    stored = {c["method"]: load_examples(out / c["examples"]) for c in first}
    names = {c["method"]: c.get("class_names") or [] for c in first}

    def name(index: int, method: str | None = None) -> str:
        classes = results["datasets"][dataset].get("classes") or names.get(method) or []
        return classes[index] if 0 <= index < len(classes) else f"class {index}"

    reference = next(iter(stored.values()))
    rows = []
    for index in range(min(results["examples"], len(reference["images"]))):
        image = reference["images"][index].permute(1, 2, 0).numpy()
        mask = reference["mask"][index].numpy().astype(bool) if "mask" in reference else None
        label = name(int(reference["labels"][index])) if "labels" in reference else "unknown"
        original = png_uri(Image.fromarray(annotate(image, mask, scale=1)))
        cols = [f"<td><img src='{original}' alt='image {index}'>{_e(label)}</td>"]
        for method, tensors in stored.items():
            picture = png_uri(_overlay(tensors, index))
            predicted = name(int(tensors["predicted"][index]), method)
            cols.append(f"<td><img src='{picture}' alt='{_e(method)} {index}'>{_e(predicted)}</td>")
        rows.append(f"<tr>{''.join(cols)}</tr>")
    header = "<th>image (true class)</th>" + "".join(f"<th>{_e(m)} (predicted)</th>" for m in stored)
    return f"<table class=grid><tr>{header}</tr>{''.join(rows)}</table>"


def _settings_row(*cells: Any, settings: Any) -> str:
    text = settings if isinstance(settings, str) else json.dumps(settings, default=str)
    return "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + f"<td><pre>{_e(text)}</pre></td></tr>"


def settings_section(results: dict[str, Any]) -> str:
    """Tables of the settings of every data set, method and score (removal, features/partition, images)."""
    cells = results["cells"]
    parts = ["<h2>Settings</h2><h3>Data sets</h3><table class=settings>",
             "<tr><th>data set</th><th>images</th><th>settings</th></tr>"]  # fmt: skip
    for name, info in results["datasets"].items():
        count = next((c["images"] for c in cells if c["dataset"] == name), "—")
        shown = {k: v for k, v in info.items() if k not in ("name", "metrics", "classes")}
        parts.append(_settings_row(name, count, settings=shown))
    parts.append("</table><h3>Methods</h3><table class=settings><tr><th>method</th><th>settings</th></tr>")
    resolved = {c["method"]: c.get("method_settings") for c in cells}
    for name, settings in results["methods"].items():
        parts.append(_settings_row(name, settings=resolved.get(name) or settings))
    parts.append("</table><h3>Scores</h3><table class=settings>"
                 "<tr><th>data set</th><th>images</th><th>methods</th><th>score settings</th></tr>")  # fmt: skip
    scores: dict[tuple[str, str], list[str]] = defaultdict(list)
    images = {}
    for cell in cells:
        images[cell["dataset"]] = cell["images"]
        for settings in cell["metrics"]:
            methods = scores[(cell["dataset"], json.dumps(settings))]
            if cell["method"] not in methods:
                methods.append(cell["method"])
    for (dataset, settings), methods in scores.items():
        parts.append(_settings_row(dataset, images[dataset], ", ".join(methods), settings=settings))
    for dataset, settings in results.get("stability", {}).items():
        shown = {"metric": "map_similarity between seeds", **settings}
        parts.append(_settings_row(dataset, settings["images"], "every method with a map", settings=shown))
    parts.append("</table>")
    return "".join(parts)


def render_report(results: dict[str, Any], out: Path) -> str:
    """The report as one HTML string (example maps are read from the cell files under ``out``)."""
    body = [
        f"<h1>Benchmark '{_e(results['name'])}'</h1>",
        "<p class=note>Values are mean ± sample standard deviation over the seeds of each data set (a value without ± "
        "comes from one seed); arrows give the direction of better; the best value per column is bold. "
        f"Hardware: {_e(json.dumps(results['hardware']))}; torch {_e(results['versions']['torch'])}. "
        f"This run computed {results.get('computed', '?')} of {len(results['cells'])} cells in "
        f"{results['seconds']:.0f} s (the others were done earlier).</p>",
    ]
    for dataset in results["datasets"]:
        info = results["datasets"][dataset]
        count = next((c["images"] for c in results["cells"] if c["dataset"] == dataset), 0)
        seeds = ", ".join(map(str, info.get("seeds") or results["seeds"]))
        body.append(f"<h2>{_e(dataset)}</h2><p class=note>{_e(info['split'])} split, {count} images, seeds {seeds}</p>")
        body.extend(results_table(results, dataset, group) for group in groups_of(results["table"], dataset))
        for caption, uri in _figures(results, dataset):
            body.append(f"<figure><img src='{uri}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption></figure>")
        body.append(f"<h3>Examples ({_e(dataset)})</h3>")
        body.append(example_grid(results, dataset, out))
    body.append(settings_section(results))
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>p2pvision benchmark {_e(results['name'])}</title><link rel=icon href='data:,'>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Write ``out/report.html`` (atomically) and return its path."""
    out = Path(out)
    path = out / "report.html"
    text = render_report(results, out)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

