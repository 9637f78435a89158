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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2pvision.cache import atomic_folder, atomic_path, write_json
from p2pvision.errors import ConfigError, path_problem
from p2pvision.inv.reveal import REVEAL_PERCENTS, reveal_image, reveal_masks
from p2pvision.io import load_image, path_within

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
    """Write a :class:`~p2pvision.inv.clustermaps.ClusterMapResult` to ``folder`` (see the module docstring).

    The folder is written whole or not at all (into a hidden folder next to it, renamed into place when complete;
    an earlier folder of the same name is replaced): an interrupted run (Ctrl-C, SIGTERM) leaves every finished
    image's folder with its ``clustermaps.json`` and no half-written one."""
    with atomic_folder(folder) as tmp:
        _write_cluster_maps(result, tmp, class_names, source, model_name, percents)
    return Path(folder)


def _write_cluster_maps(
    result, folder: Path, class_names: list[str] | None, source: str, model_name: str, percents: tuple[float, ...]
) -> None:
    from p2pvision.inv.figures import embedding_figure, overview_figure
    from p2pvision.report.overlays import heatmap_overlay

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


@dataclass
class ClusterMapRun:
    """A cluster-map folder as read back: its record (``clustermaps.json``) and lazily its arrays."""

    folder: Path
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return self.record["id"]

    def arrays(self) -> dict[str, np.ndarray]:
        path = self.folder / MAPS_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            problem = path_problem(path) or f"is not a readable {MAPS_FILE} ({' '.join(str(exc).split())[:200]})"
            raise ConfigError(f"'{path}' {problem}: write the folder again with 'p2pvision inv explain'") from None

    def image(self) -> np.ndarray:
        return np.asarray(load_image(self.folder / "image.png"))


def load_run(folder: str | os.PathLike[str]) -> ClusterMapRun:
    """Read a folder written by :func:`save_cluster_maps`, checking its format."""
    folder = Path(folder)
    path = folder / RUN_FILE
    if not path.is_file():
        raise ConfigError(f"'{folder}' is not a cluster-map folder: expected {RUN_FILE} (run 'p2pvision inv explain')")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"'{path}' is not UTF-8 text: write it again with 'p2pvision inv explain'") from None
    except OSError as exc:
        raise ConfigError(f"'{path}' cannot be read ({exc.strerror or exc}): check the file") from None
    if not isinstance(record, dict):
        raise ConfigError(f"'{path}' holds a JSON {type(record).__name__}, not a cluster-map record: write it again "
                          "with 'p2pvision inv explain'")  # fmt: skip
    if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"'{path}' is not a version-{FORMAT_VERSION} cluster-map record: "
            "write it again with 'p2pvision inv explain'"
        )
    problem = _record_problem(record, folder, path)
    if problem is not None:
        raise ConfigError(f"'{path}' is not a valid cluster-map record ({problem}): write it again with "
                          "'p2pvision inv explain'")  # fmt: skip
    return ClusterMapRun(folder, record)


_RECORD_KEYS = {"id": str, "name": str, "target": int, "target_name": str, "choices": list, "reveal_percents": list,
                "layers": list}  # fmt: skip
_LAYER_KEYS = {"layer": str, "index": int, "clusters": list}
_CLUSTER_KEYS = {"cluster": int, "kept": bool, "weight": (int, float)}
_KEPT_KEYS = {"task": str, "map": str, "reveal": list}


def _wrong_keys(entry: Any, keys: dict[str, Any]) -> str | None:
    if not isinstance(entry, dict):
        return f"a {type(entry).__name__} instead of an object"
    for key, kind in keys.items():
        value = entry.get(key)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            return f"'{key}' is {'missing' if value is None else repr(value)[:40]}"
    return None


def _record_problem(record: dict[str, Any], folder: Path, path: Path) -> str | None:
    """What makes a cluster-map record unusable (a missing or wrongly typed key, a file named outside its folder),
    or None. Every file it names must lie inside its folder (a maps file may not point elsewhere)."""
    problem = _wrong_keys(record, _RECORD_KEYS)
    if problem is not None:
        return problem
    for number, layer in enumerate(record["layers"]):
        problem = _wrong_keys(layer, _LAYER_KEYS)
        if problem is not None:
            return f"layer {number}: {problem}"
        for cluster in layer["clusters"]:
            problem = _wrong_keys(cluster, {**_CLUSTER_KEYS, **(_KEPT_KEYS if cluster.get("kept") else {})})
            if problem is not None:
                return f"layer {layer['layer']}: cluster: {problem}"
            if cluster["kept"]:
                names = [cluster["map"], *cluster["reveal"]]
                if not all(isinstance(name, str) for name in names):
                    return f"layer {layer['layer']}: cluster {cluster['cluster']}: file names must be texts"
                for name in names:
                    path_within(folder, name, path)  # a one-line refusal naming the file outside
    return None


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
            problem = path_problem(path, "folder") or "is not a folder"
            raise ConfigError(f"'{path}' {problem}: name a folder written by 'p2pvision inv explain'")
        if not found:
            raise ConfigError(f"no {RUN_FILE} under '{path}': run 'p2pvision inv explain' first")
        for folder in found:
            runs.setdefault(folder.resolve(), load_run(folder))
    return list(runs.values())
