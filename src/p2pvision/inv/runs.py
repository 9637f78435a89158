"""Cluster-map folders: what ``p2pvision inv explain`` writes per image and what labelling and global
explanations read.

A folder holds ``clustermaps.json`` (image, model, target, the model's top classes, and per layer its clusters
with weights, members and file names), ``maps.npz`` (arrays, read without pickle), ``image.png`` (the image as
the model saw it), ``overview.png`` (per layer: Grad-CAM, then the kept cluster maps), ``embedding.png`` (the
2-d channel embedding coloured by cluster), ``maps/L<i>_C<j>.png`` (each kept cluster map over the image) and
``reveal/L<i>_C<j>_q<s>.png`` (the partial-reveal images shown to labellers). Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import ConfigError
from p2pvision.inv.reveal import REVEAL_PERCENTS, reveal_image, reveal_masks

FORMAT = "p2pvision-inv-clustermaps"
FORMAT_VERSION = 1
RUN_FILE = "clustermaps.json"
MAPS_FILE = "maps.npz"


def task_id(run_id: str, layer_index: int, cluster: int) -> str:
    """The identifier of one cluster map to label: ``<run id>-L<layer>-C<cluster>``."""
    return f"{run_id}-L{layer_index}-C{cluster}"


def _uint8(image) -> np.ndarray:
    array = image.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy() if hasattr(image, "detach") else image
    return (np.asarray(array, dtype=np.float32) * 255).round().astype(np.uint8)


def _save_png(path: Path, picture: Image.Image | np.ndarray) -> None:
    picture = Image.fromarray(picture) if isinstance(picture, np.ndarray) else picture
    with atomic_path(path) as tmp:
        picture.save(tmp)


def save_cluster_maps(
    result,
    folder: str | os.PathLike[str],
    class_names: list[str] | None = None,
    source: str = "",
    model_name: str = "",
    percents: tuple[float, ...] = REVEAL_PERCENTS,
) -> Path:
    """Write a :class:`~p2pvision.inv.clustermaps.ClusterMapResult` to ``folder`` (see the module docstring)."""
    from p2pvision.inv.figures import embedding_figure, overview_figure
    from p2pvision.report.overlays import heatmap_overlay

    folder = Path(folder)
    pixels = _uint8(result.image)
    names = class_names or [f"class {i}" for i in range(max([result.target, *result.top_classes]) + 1)]
    digest = hashlib.sha256(pixels.tobytes())
    digest.update(json.dumps([model_name, result.target, [layer.layer for layer in result.layers]]).encode())
    digest.update(json.dumps(result.config.to_dict(), sort_keys=True).encode())
    run_id = digest.hexdigest()[:10]
    arrays: dict[str, np.ndarray] = {}
    layers: list[dict[str, Any]] = []
    for index, layer in enumerate(result.layers):
        arrays[f"L{index}_weights"] = layer.channel_weights.astype(np.float32)
        arrays[f"L{index}_gradcam"] = layer.gradcam.astype(np.float32)
        arrays[f"L{index}_kept"] = layer.kept_channels.astype(np.int64)
        arrays[f"L{index}_embedding"] = layer.embedding.astype(np.float32)
        arrays[f"L{index}_assignment"] = layer.assignment.astype(np.int64)
        clusters = []
        for cluster in layer.clusters:
            key = f"L{index}_C{cluster.cluster}"
            arrays[f"{key}_layer"] = cluster.layer_map
            arrays[f"{key}_pixel"] = cluster.pixel_map
            entry: dict[str, Any] = {
                "cluster": cluster.cluster,
                "weight": cluster.weight,
                "channels": cluster.channels,
                "kept": cluster.kept,
            }
            if cluster.kept:
                entry["task"] = task_id(run_id, index, cluster.cluster)
                entry["map"] = f"maps/{key}.png"
                caption = f"{layer.layer} C{cluster.cluster} {cluster.weight:.1f}%"
                _save_png(folder / entry["map"], heatmap_overlay(pixels, cluster.pixel_map, caption=caption))
                entry["reveal"] = []
                for step, mask in enumerate(reveal_masks(cluster.pixel_map, percents)):
                    name = f"reveal/{key}_q{step}.png"
                    _save_png(folder / name, reveal_image(pixels, mask))
                    entry["reveal"].append(name)
            clusters.append(entry)
        layers.append(
            {
                "layer": layer.layer,
                "index": index,
                "channels": int(layer.channel_weights.shape[0]),
                "kept_channels": int(layer.kept_channels.shape[0]),
                "map_size": list(layer.gradcam.shape),
                "silhouette": {str(k): v for k, v in layer.silhouette.items()},
                "clusters": clusters,
            }
        )
    _save_png(folder / "image.png", pixels)
    _save_png(folder / "overview.png", overview_figure(result, pixels))
    with atomic_path(folder / "embedding.png") as tmp:
        embedding_figure(result, tmp)
    with atomic_path(folder / MAPS_FILE) as tmp:
        with open(tmp, "wb") as handle:
            # numpy types savez's allow_pickle keyword as bool; none of these array names is allow_pickle
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "id": run_id,
        "image": source,
        "name": Path(source).stem if source else run_id,
        "model": model_name,
        "target": result.target,
        "target_name": result.target_name,
        "probability": result.probability,
        "choices": [names[i] for i in result.top_classes],
        "input_size": list(pixels.shape[:2]),
        "reveal_percents": list(percents),
        "config": result.config.to_dict(),
        "layers": layers,
    }
    write_json(folder / RUN_FILE, record)
    return folder


@dataclass
class ClusterMapRun:
    """A cluster-map folder as read back: its record (``clustermaps.json``) and lazily its arrays."""

    folder: Path
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return self.record["id"]

    def arrays(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / MAPS_FILE, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}

    def image(self) -> np.ndarray:
        with Image.open(self.folder / "image.png") as picture:
            return np.asarray(picture.convert("RGB"))


def load_run(folder: str | os.PathLike[str]) -> ClusterMapRun:
    """Read a folder written by :func:`save_cluster_maps`, checking its format."""
    folder = Path(folder)
    path = folder / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"'{folder}' is not a cluster-map folder: expected {RUN_FILE} (run 'p2pvision inv explain')")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"'{path}' is not a version-{FORMAT_VERSION} cluster-map record: "
            "write it again with 'p2pvision inv explain'"
        )
    return ClusterMapRun(folder, record)


def find_runs(paths: list[str | os.PathLike[str]]) -> list[ClusterMapRun]:
    """Cluster-map folders named in ``paths``, each a folder or a parent of folders (searched recursively)."""
    runs: dict[Path, ClusterMapRun] = {}
    for name in paths:
        path = Path(name)
        if (path / RUN_FILE).is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(record.parent for record in path.rglob(RUN_FILE))
        else:
            raise ConfigError(f"'{path}' does not exist: name a folder written by 'p2pvision inv explain'")
        if not found:
            raise ConfigError(f"no {RUN_FILE} under '{path}': run 'p2pvision inv explain' first")
        for folder in found:
            runs.setdefault(folder.resolve(), load_run(folder))
    return list(runs.values())
