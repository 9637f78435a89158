"""What the explorer computes for one P2P model, independent of HTTP: images by id with their cached selector
features, the kept regions at any tau, the certainty-vs-tau curve, region embeddings, post-hoc explainers' maps
and the downloads (the P2P figure and the :class:`~p2pvision.explanation.Explanation` file).

Each image is loaded, resized and centre-cropped to the model's input size, partitioned with the model's partition
and passed through the selector backbone once (:meth:`~p2pvision.models.p2p.model.P2PModel.selector`); a new tau
then re-runs only the tau-conditioned head and the classifier (``classify_at``). The curve holds the hard-mask
prediction at every tau of the model's grid, so a certainty ``delta`` maps to the tau the model's grid search
chooses (the smallest grid tau whose top probability is at least delta, else the largest) without any new run.
All computing is serialised by one lock: the model and its explainers' hooks are not shared between threads.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from p2pvision.errors import ImageLoadError, P2PVisionError
from p2pvision.explain import make_explainer
from p2pvision.explanation import Explanation
from p2pvision.io import tensor_to_pil
from p2pvision.models.p2p.model import P2PModel
from p2pvision.predict import prepare_image
from p2pvision.regions import make_partitioner, partition_batch
from p2pvision.report.overlays import heatmap_overlay
from p2pvision.report.p2p_figures import explanation_figure, kept_overlay

# Post-hoc explainers run beside P2P with these budgets (a few seconds per 224 px image on 2 CPU cores), so that
# they stay interactive; a method not listed runs at its own CPU default.
INTERACTIVE_BUDGETS: dict[str, dict[str, Any]] = {
    "rise": {"num_masks": 64},
    "lime": {"num_samples": 64},
    "kernel_shap": {"num_samples": 64},
    "shapley": {"num_permutations": 1},
    "sliding_patch": {"stride": 32},
    "meaningful_perturbation": {"steps": 20},
    "moxi": {"partitioner": {"name": "grid", "grid": 4}},
    "moxi_minus": {"partitioner": {"name": "grid", "grid": 4}},
}
DEFAULT_METHODS = ("grad_cam", "rise")
MAX_NAME = 200  # characters of a shown file name
MAX_UPLOADS = 32  # uploaded images kept (the oldest is dropped first)
OVERLAYS_KEPT = 8  # rendered masks kept per image (the page fetches the latest)
LOADED_KEPT = 32  # images whose features and pictures stay in memory (the least recently used is unloaded first)


class UnknownImage(P2PVisionError, LookupError):
    """An image id that the explorer does not hold."""


def clean_name(name: str) -> str:
    """A file name as shown: control and invisible characters dropped, at most :data:`MAX_NAME` characters, never
    empty. Pages show it as text (never parsed as HTML)."""
    shown = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return (shown or "image")[:MAX_NAME]


def download_stem(name: str) -> str:
    """A file-name stem safe in a Content-Disposition header: letters, digits, ``.``, ``_`` and ``-`` only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem[:80] or "image"


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)  # fast: the pictures travel over loopback
    return buffer.getvalue()


@dataclass
class Entry:
    """One image: its source, and once loaded its tensors, features, curve and rendered pictures."""

    name: str
    path: Path | None = None  # None for an uploaded image (its tensors are set when it is added)
    image: Tensor | None = None  # (1,3,S,S) in [0,1]
    regions: Tensor | None = None  # (1,S,S)
    features: Tensor | None = None
    png: bytes = b""
    curve: list[dict[str, Any]] | None = None
    overlays: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    maps: dict[str, bytes] = field(default_factory=dict)
    logits_by_mask: dict[bytes, Tensor] = field(default_factory=dict)  # class logits of each hard mask classified
    posthoc: list[dict[str, Any]] | None = None


class Explorer:
    """A P2P model and the images it is explored on (files given at start and uploads), by string id."""

    def __init__(
        self, model: P2PModel, paths: Sequence[Path] = (), methods: tuple[str, ...] = DEFAULT_METHODS,
        title: str = "P2P model", names: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        """``paths``: image files, loaded when first picked, shown by their ``names`` (default: the file names)."""
        self.model = model.eval()
        self.title = title
        self.methods = tuple(methods)
        self.partitioner = make_partitioner(**model.config.partition)
        self.device = next(model.parameters()).device
        shown = [Path(path).name for path in paths] if names is None else names
        pairs = enumerate(zip(paths, shown, strict=True))
        self.entries = {str(number): Entry(clean_name(name), Path(path)) for number, (path, name) in pairs}
        self.uploads: list[str] = []
        self._loaded: OrderedDict[str, None] = OrderedDict()  # ids with features, least recently used first
        self._next = len(self.entries)
        self.lock = threading.RLock()

    # -- the model -----------------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[float, ...]:
        """The taus the model's search walks (the fixed tau alone in fixed mode)."""
        config = self.model.config
        return (config.fixed_tau,) if config.tau_mode == "fixed" else tuple(config.tau_grid)

    def info(self) -> dict[str, Any]:
        """What the page needs to start: the model's settings, the images and the post-hoc methods."""
        config = self.model.config
        return {
            "title": self.title,
            "classes": list(self.model.class_names),
            "image_size": config.image_size,
            "tau_mode": config.tau_mode,
            "tau_grid": list(self.grid),
            "delta": config.delta,
            "methods": list(self.methods),
            "images": [{"id": key, "name": entry.name} for key, entry in self.entries.items()],
        }

    # -- images --------------------------------------------------------------------------------------------
    def entry(self, image_id: str) -> Entry:
        """The image ``image_id``, loaded and passed through the selector backbone on first use."""
        with self.lock:
            entry = self.entries.get(image_id)
            if entry is None:
                raise UnknownImage(f"no image with id {image_id!r}: pick one from the list or drop a file")
            if entry.features is None:
                if entry.image is None:
                    assert entry.path is not None  # an upload is prepared when it is added
                    self._prepare(entry, prepare_image(entry.path, self.model.config.image_size))
                assert entry.image is not None
                with torch.no_grad():
                    entry.features = self.model.selector.features(entry.image)
            self._loaded[image_id] = None
            self._loaded.move_to_end(image_id)
            while len(self._loaded) > LOADED_KEPT:
                self._unload(self.entries.get(self._loaded.popitem(last=False)[0]))
            return entry

    @staticmethod
    def _unload(entry: Entry | None) -> None:
        """Forget what an image computed (an image file is read again when picked; an upload keeps its pixels)."""
        if entry is None:
            return
        if entry.path is not None:
            entry.image = entry.regions = None
            entry.png = b""
        entry.features, entry.curve, entry.posthoc = None, None, None
        entry.overlays.clear()
        entry.maps.clear()
        entry.logits_by_mask.clear()

    def _prepare(self, entry: Entry, image: Tensor) -> None:
        entry.image = image.unsqueeze(0).to(self.device)
        entry.regions = partition_batch(entry.image, self.partitioner)
        entry.png = png_bytes(tensor_to_pil(image))

    def add_upload(self, data: bytes, name: str) -> str:
        """Add an uploaded image file (its bytes and its name) and return its id. A file that is not a usable
        image raises :class:`~p2pvision.errors.ImageLoadError` naming the file (not a temporary path)."""
        shown = clean_name(name)
        suffix = re.sub(r"[^A-Za-z0-9.]", "", Path(shown).suffix)[:10]
        with tempfile.TemporaryDirectory(prefix="p2pvision-explore-") as folder:
            path = Path(folder) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                image = prepare_image(path, self.model.config.image_size)
            except ImageLoadError as exc:
                raise ImageLoadError(str(exc).replace(str(path), shown)) from None
        with self.lock:
            image_id = str(self._next)
            self._next += 1
            entry = Entry(shown)
            self._prepare(entry, image)
            self.entries[image_id] = entry
            self.uploads.append(image_id)
            while len(self.uploads) > MAX_UPLOADS:
                del self.entries[self.uploads.pop(0)]
        return image_id

    # -- P2P at a tau --------------------------------------------------------------------------------------
    def curve(self, image_id: str) -> list[dict[str, Any]]:
        """Per grid tau (one batched head run, the classifier once per distinct mask): the predicted class, its
        probability and the kept share of the pixels."""
        with self.lock:
            entry = self.entry(image_id)
            if entry.curve is None:
                taus = torch.tensor(self.grid, device=self.device)
                logits, outputs, _ = self._classify(entry, taus)
                probabilities = logits.float().softmax(-1)
                kept = self._kept_fraction(entry, outputs.logits, outputs.areas)
                entry.curve = [
                    {"tau": tau, "class": int(probabilities[i].argmax()), "probability": float(probabilities[i].max()),
                     "kept_fraction": float(kept[i])}
                    for i, tau in enumerate(self.grid)
                ]  # fmt: skip
            return entry.curve

    def tau_for_delta(self, image_id: str, delta: float) -> float:
        """The tau the model's grid search picks at certainty ``delta``: the smallest grid tau whose top
        probability is at least ``delta``, else the largest."""
        points = self.curve(image_id)
        return next((point["tau"] for point in points if point["probability"] >= delta), points[-1]["tau"])

    @torch.no_grad()
    def _classify(self, entry: Entry, taus: Tensor) -> tuple[Tensor, Any, int]:
        """Class logits (T, C) with hard masks and the region outputs at budgets ``taus`` (T,), as ``classify_at``
        gives them, and how many masks the classifier ran on: only masks this image has not been classified with
        yet (the same input gives the same logits), so a slider move that keeps the same regions runs the head
        alone."""
        assert entry.features is not None and entry.image is not None and entry.regions is not None
        count = len(taus)
        features = entry.features.expand(count, *entry.features.shape[1:])
        regions = entry.regions.expand(count, -1, -1)
        outputs = self.model.region_outputs(features, regions, taus)
        masks = self.model.hard_keep(outputs.logits, outputs.areas)
        keys = [mask.cpu().numpy().tobytes() for mask in masks]
        new = list(dict.fromkeys(key for key in keys if key not in entry.logits_by_mask))
        if new:
            rows = [keys.index(key) for key in new]
            images = entry.image.expand(len(rows), -1, -1, -1)
            logits = self.model.classify_regions(images, regions[: len(rows)], masks[rows].to(images.dtype)[:, None])
            entry.logits_by_mask.update(zip(new, logits.float()))
        return torch.stack([entry.logits_by_mask[key] for key in keys]), outputs, len(new)

    def _kept_fraction(self, entry: Entry, logits: Tensor, areas: Tensor) -> Tensor:
        assert entry.regions is not None
        kept = self.model.hard_keep(logits, areas)
        return (areas * kept).sum(-1).float() / entry.regions[0].numel()

    def view(self, image_id: str, tau: float) -> dict[str, Any]:
        """The prediction at ``tau`` (the head, and the classifier unless the mask was classified before): class,
        probability, top classes, kept regions and share, the regions' 2-D embedding (PCA of the embeddings of the
        present regions), and the id of the rendered mask (:meth:`overlay`)."""
        with self.lock:
            entry = self.entry(image_id)
            started = time.perf_counter()
            logits, outputs, classified = self._classify(entry, torch.tensor([float(tau)], device=self.device))
            probabilities = logits[0].float().softmax(-1)
            areas, region_logits = outputs.areas[0], outputs.logits[0]
            kept = self.model.hard_keep(region_logits[None], areas[None])[0]
            assert entry.image is not None and entry.regions is not None
            keep = kept[entry.regions[0]].cpu().numpy()
            pixels = (entry.image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
            overlay = kept_overlay(pixels, keep, entry.regions[0].cpu().numpy())
            key = (max(entry.overlays) + 1) if entry.overlays else 0
            entry.overlays[key] = png_bytes(Image.fromarray(overlay))
            while len(entry.overlays) > OVERLAYS_KEPT:
                entry.overlays.popitem(last=False)
            top = probabilities.topk(min(5, len(probabilities)))
            names = self.model.class_names
            return {
                "id": image_id,
                "tau": float(tau),
                "class": names[int(top.indices[0])],
                "probability": float(top.values[0]),
                "top": [{"class": names[int(i)], "probability": float(p)} for p, i in zip(top.values, top.indices)],
                "kept_regions": int(kept.sum()),
                "regions": int((areas > 0).sum()),
                "kept_fraction": float(self._kept_fraction(entry, region_logits[None], areas[None])[0]),
                "embedding": self._embedding(outputs.embeddings[0], region_logits, areas),
                "overlay": f"/api/overlay/{image_id}/{key}.png",
                "curve": self.curve(image_id),
                "classified": classified > 0,  # False: the classifier had seen this mask (its logits were reused)
                "seconds": time.perf_counter() - started,
            }

    @staticmethod
    def _embedding(embeddings: Tensor, logits: Tensor, areas: Tensor) -> list[dict[str, Any]]:
        """The present regions' embeddings projected on their first two principal components."""
        present = torch.nonzero(areas > 0).flatten()
        points = embeddings[present].double()
        centred = points - points.mean(0, keepdim=True)
        projected = torch.zeros(len(present), 2, dtype=centred.dtype)
        if len(present) > 1 and centred.abs().max() > 0:
            components = torch.linalg.svd(centred, full_matrices=False)[2][:2]
            projected[:, : len(components)] = centred @ components.T
        return [{"region": int(region), "x": float(x), "y": float(y), "kept": bool(logits[region] > 0),
                 "score": float(torch.sigmoid(logits[region]))}
                for region, (x, y) in zip(present.tolist(), projected.tolist())]  # fmt: skip

    def overlay(self, image_id: str, key: int) -> bytes | None:
        """A mask rendered by :meth:`view` (None once replaced by newer ones)."""
        with self.lock:
            entry = self.entries.get(image_id)
            return None if entry is None else entry.overlays.get(key)

    def image_png(self, image_id: str) -> bytes:
        with self.lock:
            return self.entry(image_id).png

    # -- post-hoc explainers -------------------------------------------------------------------------------
    def posthoc(self, image_id: str) -> list[dict[str, Any]]:
        """Each of :attr:`methods` on the P2P model's classifier (full image, its top class), with interactive
        budgets: the map's URL and its cost (model evaluations, seconds), or the method's one-line error."""
        with self.lock:
            entry = self.entry(image_id)
            if entry.posthoc is not None:
                return entry.posthoc
            results: list[dict[str, Any]] = []
            for method in self.methods:
                try:
                    explanation = self._posthoc_one(entry, method)
                except (P2PVisionError, ValueError, RuntimeError) as exc:
                    results.append({"method": method, "error": " ".join(str(exc).splitlines())[:300]})
                    continue
                assert explanation.pixel_map is not None and explanation.evaluations is not None
                assert entry.image is not None
                entry.maps[method] = png_bytes(heatmap_overlay(entry.image[0], explanation.pixel_map[0]))
                results.append({
                    "method": explanation.method,
                    "url": f"/api/posthoc/{image_id}/{method}.png",
                    "evaluations": int(explanation.evaluations[0]),
                    "seconds": round(explanation.seconds, 3),
                    "class": self.model.class_names[int(explanation.target[0])],
                })  # fmt: skip
            entry.posthoc = results
            return results

    def _posthoc_one(self, entry: Entry, method: str) -> Explanation:
        params = dict(INTERACTIVE_BUDGETS.get(method, {}))
        if isinstance(params.get("partitioner"), dict):
            params["partitioner"] = make_partitioner(**params["partitioner"])
        explainer = make_explainer(method, self.model.classifier, **params)
        return explainer.explain(entry.image).cpu()

    def posthoc_map(self, image_id: str, method: str) -> bytes | None:
        with self.lock:
            entry = self.entries.get(image_id)
            return None if entry is None else entry.maps.get(method)

    # -- downloads -----------------------------------------------------------------------------------------
    def explanation(self, image_id: str, tau: float | None = None, delta: float | None = None) -> Explanation:
        """The model's own explanation of the image at a fixed ``tau``, or searched at certainty ``delta``."""
        with self.lock:
            entry = self.entry(image_id)
            assert entry.image is not None
            return self.model.explain(entry.image, regions=entry.regions, tau=tau, delta=delta).cpu()

    def figure_png(self, image_id: str, tau: float | None = None, delta: float | None = None) -> bytes:
        """The P2P figure (input, kept regions, selection probabilities, correlations) as PNG bytes."""
        with self.lock:  # the image stays loaded while it is drawn
            result = self.explanation(image_id, tau, delta)
            entry = self.entry(image_id)
            assert entry.image is not None
            pixels = (entry.image[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
            title = entry.name.replace("$", r"\$")  # matplotlib reads $...$ as mathematics
            with tempfile.TemporaryDirectory(prefix="p2pvision-explore-") as folder:
                path = explanation_figure(pixels, result, 0, title, Path(folder) / "figure.png",
                                          self.model.class_names, dpi=120)  # fmt: skip
                return path.read_bytes()

    def explanation_file(self, image_id: str, tau: float | None = None, delta: float | None = None) -> bytes:
        """The :class:`~p2pvision.explanation.Explanation` file (safetensors, :meth:`Explanation.load` reads it)."""
        result = self.explanation(image_id, tau, delta)
        with tempfile.TemporaryDirectory(prefix="p2pvision-explore-") as folder:
            return result.save(Path(folder) / "explanation.safetensors").read_bytes()


def image_inputs(names: Sequence[str], limit: int) -> tuple[list[Path], list[str]]:
    """The image files named by ``names`` and how to show them: files as given (by their names), folders as their
    image files and those of their subfolders (an image-folder data set, one folder per class; shown as
    ``class/file``), sorted; at most ``limit`` in all."""
    from p2pvision.data.folders import image_files, subfolders

    paths: list[Path] = []
    shown: list[str] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = image_files(path) + [file for sub in subfolders(path) for file in image_files(path / sub)]
            paths.extend(found)
            shown.extend(str(file.relative_to(path)) for file in found)
        else:  # a file that cannot be used gets its one-line message when it is picked
            paths.append(path)
            shown.append(path.name)
    return paths[:limit], shown[:limit]
