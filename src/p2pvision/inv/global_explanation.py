"""INV global explanations: from labelled cluster maps to the concepts a network uses for a class, layer by
layer.

1. The labels of all answers are normalised, embedded and grouped (:mod:`p2pvision.inv.labels`); each group's
   score for each cluster map follows the paper (reveal step and guess correctness).
2. Per image and layer, cluster maps that share a best label are merged: weights add up, the merged map is the
   weight-averaged map, label scores add up. Cluster maps nobody labelled are left out.
3. Per class (the explained target) and layer, label scores are summed over the merged maps of all images of
   that class, and given as shares of the layer's total, so layers compare: which concepts rise or fall with
   depth. Written as ``global.json``, one plot per class and a self-contained ``index.html``.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2pvision.cache import atomic_path, write_json
from p2pvision.inv.answers import Answer
from p2pvision.inv.labels import Embedder, LabelGroups, group_labels, latest_answers, normalise_label, score_labels
from p2pvision.inv.runs import ClusterMapRun

TOP_LABELS = 8


@dataclass
class MergedMap:
    """Cluster maps of one image and layer that share a best label, merged."""

    run_id: str
    image: str
    target_name: str
    layer: str
    layer_index: int
    label: str
    clusters: list[int]
    weight: float
    label_scores: dict[str, float]
    answers: int
    pixel_map: np.ndarray = field(repr=False)

    @property
    def score(self) -> float:
        return self.label_scores[self.label]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "image": self.image,
            "layer": self.layer,
            "label": self.label,
            "score": self.score,
            "clusters": self.clusters,
            "weight": self.weight,
            "answers": self.answers,
            "label_scores": self.label_scores,
        }


@dataclass
class GlobalExplanation:
    """Label groups, merged cluster maps, and per class and layer the label scores and their shares."""

    groups: LabelGroups
    layers: list[str]
    merged: list[MergedMap]
    scores: dict[str, dict[str, dict[str, float]]]  # class -> layer -> label -> summed score
    images: dict[str, list[str]]  # class -> image names
    answers_used: int
    unlabelled_maps: int

    def shares(self, class_name: str) -> dict[str, dict[str, float]]:
        """Per layer, each label's share of the layer's summed label scores for ``class_name``."""
        result = {}
        for layer, values in self.scores.get(class_name, {}).items():
            total = sum(values.values())
            result[layer] = {label: score / total for label, score in values.items()} if total else {}
        return result

    def top_labels(self, class_name: str, count: int = TOP_LABELS) -> list[str]:
        """Labels by their share summed over layers, best first."""
        totals: dict[str, float] = defaultdict(float)
        for values in self.shares(class_name).values():
            for label, share in values.items():
                totals[label] += share
        return sorted(totals, key=lambda label: (-totals[label], label))[:count]

    def to_json(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "answers_used": self.answers_used,
            "unlabelled_cluster_maps": self.unlabelled_maps,
            "label_groups": [{"name": n, "members": m} for n, m in zip(self.groups.names, self.groups.members)],
            "classes": {
                name: {"images": self.images[name], "scores": self.scores[name], "shares": self.shares(name)}
                for name in sorted(self.scores)
            },
            "merged_cluster_maps": [merged.to_dict() for merged in self.merged],
        }


def _layer_order(runs: Iterable[ClusterMapRun]) -> list[str]:
    position: dict[str, float] = {}
    for run in runs:
        for layer in run.record["layers"]:
            position.setdefault(layer["layer"], layer["index"])
    return sorted(position, key=lambda name: (position[name], name))


def _best(scores: dict[str, float]) -> str:
    return min(scores, key=lambda label: (-scores[label], label))


def build_global_explanation(
    runs: list[ClusterMapRun], answers: Iterable[Answer], embed: Embedder | None = None
) -> GlobalExplanation:
    """Group and score the labels of ``answers`` for the cluster maps of ``runs``; merge and aggregate."""
    targets: dict[str, str] = {}
    for run in runs:
        for layer in run.record["layers"]:
            for cluster in layer["clusters"]:
                if cluster["kept"]:
                    targets[cluster["task"]] = run.record["target_name"]
    used = latest_answers(answer for answer in answers if answer.task_id in targets)
    groups = group_labels((normalise_label(f) for answer in used for f in answer.features), embed)
    scores = score_labels(used, targets, groups)
    counts: dict[str, int] = defaultdict(int)
    for answer in used:
        counts[answer.task_id] += 1
    merged: list[MergedMap] = []
    class_scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(float)))
    images: dict[str, list[str]] = defaultdict(list)
    unlabelled = 0
    for run in runs:
        record = run.record
        images[record["target_name"]].append(record["name"])
        arrays = None
        for layer in record["layers"]:
            by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for cluster in layer["clusters"]:
                if not cluster["kept"]:
                    continue
                if not scores.get(cluster["task"]):
                    unlabelled += 1
                    continue
                by_label[_best(scores[cluster["task"]])].append(cluster)
            for label, clusters in sorted(by_label.items()):
                arrays = arrays if arrays is not None else run.arrays()
                weight = sum(c["weight"] for c in clusters)
                pixel_map = sum(c["weight"] * arrays[f"L{layer['index']}_C{c['cluster']}_pixel"] for c in clusters)
                label_scores: dict[str, float] = defaultdict(float)
                for cluster in clusters:
                    for name, value in scores[cluster["task"]].items():
                        label_scores[name] += value
                        class_scores[record["target_name"]][layer["layer"]][name] += value
                merged.append(
                    MergedMap(
                        run_id=record["id"], image=record["name"], target_name=record["target_name"],
                        layer=layer["layer"], layer_index=layer["index"], label=label,
                        clusters=[c["cluster"] for c in clusters], weight=weight, label_scores=dict(label_scores),
                        answers=sum(counts[c["task"]] for c in clusters), pixel_map=pixel_map / weight,
                    )
                )  # fmt: skip
    layers = _layer_order(runs)
    return GlobalExplanation(
        groups=groups,
        layers=layers,
        merged=merged,
        scores={c: {layer: dict(v) for layer, v in per.items()} for c, per in class_scores.items()},
        images=dict(images),
        answers_used=len(used),
        unlabelled_maps=unlabelled,
    )


# -- output --------------------------------------------------------------------------------------------------
def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "class"


def class_plot(explanation: GlobalExplanation, class_name: str, path: str | os.PathLike[str]) -> None:
    """Shares of the top labels across layers (shallow to deep) for one class."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shares = explanation.shares(class_name)
    layers = [layer for layer in explanation.layers if layer in shares] or explanation.layers
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    for number, label in enumerate(explanation.top_labels(class_name)):
        values = [100 * shares.get(layer, {}).get(label, 0.0) for layer in layers]
        axis.plot(range(len(layers)), values, marker="o", color=plt.cm.tab10(number % 10), label=label)
    axis.set_xticks(range(len(layers)), layers, rotation=20, fontsize=8)
    axis.set_xlabel("layer (shallow to deep)")
    axis.set_ylabel("share of label score (%)")
    count = len(explanation.images.get(class_name, []))
    axis.set_title(f"{class_name}: concepts across layers ({count} image{'s' if count != 1 else ''})")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail(image: np.ndarray, pixel_map: np.ndarray, side: int = 160) -> bytes:
    from p2pvision.report.overlays import heatmap_overlay

    picture = heatmap_overlay(image, pixel_map).resize((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 70rem; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.gallery { display: flex; flex-wrap: wrap; gap: .6rem; }
figure { margin: 0; width: 160px; font-size: .8rem; } figure img { display: block; }
.muted { color: #666; }
"""


def global_html(
    explanation: GlobalExplanation, runs: list[ClusterMapRun], plots: dict[str, bytes],
    pictures: dict[str, np.ndarray] | None = None,
) -> str:  # fmt: skip
    """A self-contained page (images inlined, no script): per class the plot, the table of label shares per
    layer and the merged cluster maps with their best labels; then the label groups. Every text is escaped.
    ``pictures``: each run's image by run id (read from the runs when None)."""
    e = html.escape
    pictures = pictures if pictures is not None else {run.id: run.image() for run in runs}
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>INV global explanations</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>INV global explanations</h1>",
        f'<p class="muted">{len(runs)} images, {len(explanation.merged)} labelled (merged) cluster maps, '
        f"{explanation.answers_used} answers, {len(explanation.groups.names)} label groups; "
        f"{explanation.unlabelled_maps} cluster maps without answers.</p>",
    ]
    for class_name in sorted(explanation.scores):
        shares = explanation.shares(class_name)
        layers = [layer for layer in explanation.layers if layer in shares]
        parts.append(f'<section class="class"><h2>{e(class_name)}</h2>')
        parts.append(f'<p class="muted">images: {e(", ".join(explanation.images.get(class_name, [])))}</p>')
        parts.append(f'<img src="{_data_url(plots[class_name])}" alt="label shares across layers for {e(class_name)}">')
        parts.append("<table><tr><th>label</th>" + "".join(f"<th>{e(layer)}</th>" for layer in layers) + "</tr>")
        for label in explanation.top_labels(class_name):
            cells = "".join(f"<td>{100 * shares[layer].get(label, 0.0):.1f}%</td>" for layer in layers)
            parts.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
        parts.append("</table><h3>Cluster maps by best label</h3><div class=\"gallery\">")
        for merged in explanation.merged:
            if merged.target_name != class_name:
                continue
            caption = f"{merged.image} · {merged.layer} · {merged.label} ({merged.score:.2f}, {merged.weight:.0f}%)"
            png = _thumbnail(pictures[merged.run_id], merged.pixel_map)
            parts.append(f'<figure><img src="{_data_url(png)}" alt="{e(caption)}" width="160" height="160">'
                         f"<figcaption>{e(caption)}</figcaption></figure>")  # fmt: skip
        parts.append("</div></section>")
    parts.append("<section><h2>Label groups</h2><table><tr><th>name</th><th>labels in the group</th></tr>")
    for name, members in zip(explanation.groups.names, explanation.groups.members):
        parts.append(f"<tr><td>{e(name)}</td><td>{e(', '.join(members))}</td></tr>")
    parts.append("</table></section></body></html>")
    return "\n".join(parts)


def write_global_explanation(
    explanation: GlobalExplanation, runs: list[ClusterMapRun], out: str | os.PathLike[str]
) -> dict[str, Path]:
    """Write ``global.json``, ``class_<name>.png`` per class and ``index.html`` into ``out``; returns the paths."""
    out = Path(out)
    paths: dict[str, Path] = {"json": out / "global.json", "html": out / "index.html"}
    pictures = {run.id: run.image() for run in runs}  # an unreadable image fails before anything is written
    write_json(paths["json"], explanation.to_json())
    plots: dict[str, bytes] = {}
    used: set[str] = set()
    for class_name in sorted(explanation.scores):
        name = slug(class_name)
        while name in used:
            name += "-"
        used.add(name)
        path = out / f"class_{name}.png"
        with atomic_path(path) as tmp:
            class_plot(explanation, class_name, tmp)
        plots[class_name] = path.read_bytes()
        paths[f"plot:{class_name}"] = path
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(global_html(explanation, runs, plots, pictures), encoding="utf-8")
    return paths
