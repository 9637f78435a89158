"""Partitioners: split an image into regions (superpixels, watershed basins, grid cells or single pixels).

Every partitioner takes a uint8 RGB image (H, W, 3) and returns an int64 label map (H, W) with contiguous
labels 0..K-1 and K <= ``max_regions``, so a batch can use ``max_regions`` slots per image. Methods that can
return more segments (SLIC, Felzenszwalb) are brought down to the limit by :func:`merge_small_regions`.
Each partitioner has a JSON-serialisable ``params`` dict that names it completely (a cache key), and
``make_partitioner(**partitioner.params)`` rebuilds it. Segmentation never depends on earlier images.
"""

from __future__ import annotations

import importlib.util
import math
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch
from skimage.color import rgb2gray
from skimage.filters import sobel
from skimage.segmentation import felzenszwalb, slic, watershed
from torch import Tensor

from p2pvision.errors import ConfigError
from p2pvision.regions.ops import relabel_contiguous
from p2pvision.registry import Registry

__all__ = [
    "FelzenszwalbPartitioner",
    "GridPartitioner",
    "Partitioner",
    "PixelPartitioner",
    "SlicPartitioner",
    "WatershedPartitioner",
    "fast_slic_available",
    "make_partitioner",
    "merge_small_regions",
    "partition_batch",
    "partitioner_names",
    "resolve_slic_backend",
]

SLIC_BACKENDS = ("auto", "skimage", "fast_slic")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"{name} must be an integer or a pair (rows, cols), got {value!r}")
        return _positive_int(name, value[0]), _positive_int(name, value[1])
    number = _positive_int(name, value)
    return number, number


def merge_small_regions(labels: np.ndarray, max_regions: int) -> np.ndarray:
    """Merge regions until at most ``max_regions`` remain; returns contiguous labels 0..K-1.

    Greedy: the smallest regions are merged into the 4-adjacent region they share the longest boundary
    with. To stay fast for thousands of excess regions the merges run in rounds on the region graph
    (areas and boundary lengths, never the pixels): each round takes the ``excess`` smallest regions and
    merges each into its best neighbour unless that neighbour is one of them too (then it waits for the next
    round; of two that pick each other, the smaller merges), so a round never chains small regions into one
    blob and the count drops by exactly the number of merges. Merging touching regions keeps 4-connected
    regions 4-connected.
    """
    max_regions = _positive_int("max_regions", max_regions)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be one label map (H, W), got shape {labels.shape}")
    labels = relabel_contiguous(labels)
    count = int(labels.max()) + 1 if labels.size else 0
    if count <= max_regions:
        return labels
    areas = np.bincount(labels.ravel(), minlength=count).astype(np.int64)
    pairs = [(labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])]
    first = np.concatenate([a.ravel() for a, _ in pairs])
    second = np.concatenate([b.ravel() for _, b in pairs])
    touching = first != second
    edge_u = np.minimum(first, second)[touching]
    edge_v = np.maximum(first, second)[touching]
    edge_w = np.ones(edge_u.size, dtype=np.int64)
    to_final = np.arange(count)  # original label -> current label
    while count > max_regions:
        edge_u, edge_v, edge_w = _aggregate_edges(edge_u, edge_v, edge_w, count)
        # Best neighbour of each region: the incident edge ranked highest by (boundary, edge key). A strict
        # total order on edges makes "best" pointers acyclic apart from mutual pairs.
        edge_rank = np.empty(edge_u.size, dtype=np.int64)
        edge_rank[np.lexsort((edge_u * count + edge_v, edge_w))] = np.arange(edge_u.size)
        ends = np.concatenate([edge_u, edge_v])
        others = np.concatenate([edge_v, edge_u])
        best_rank = np.full(count, -1, dtype=np.int64)
        np.maximum.at(best_rank, ends, np.concatenate([edge_rank, edge_rank]))
        best = np.full(count, -1, dtype=np.int64)
        is_best = best_rank[ends] == np.concatenate([edge_rank, edge_rank])
        best[ends[is_best]] = others[is_best]

        size_rank = np.empty(count, dtype=np.int64)
        size_rank[np.lexsort((np.arange(count), areas))] = np.arange(count)
        # Every region has a neighbour (count >= 2 on a connected pixel grid), and following best pointers
        # from any source ends at a non-source or a mutual pair, so each round merges at least one region.
        is_source = size_rank < count - max_regions
        sources = np.flatnonzero(is_source)
        targets = best[sources]
        mutual_smaller = (best[targets] == sources) & (size_rank[sources] < size_rank[targets])
        accept = ~is_source[targets] | mutual_smaller
        merge_map = np.arange(count)
        merge_map[sources[accept]] = targets[accept]
        kept = merge_map == np.arange(count)
        new_id = np.cumsum(kept) - 1
        merge_map = new_id[merge_map]
        count = int(kept.sum())
        areas = np.bincount(merge_map, weights=areas, minlength=count).astype(np.int64)
        to_final = merge_map[to_final]
        edge_u, edge_v = merge_map[edge_u], merge_map[edge_v]
        edge_u, edge_v = np.minimum(edge_u, edge_v), np.maximum(edge_u, edge_v)
        inside = edge_u != edge_v
        edge_u, edge_v, edge_w = edge_u[inside], edge_v[inside], edge_w[inside]
    return to_final[labels]


def _aggregate_edges(u: np.ndarray, v: np.ndarray, w: np.ndarray, count: int) -> tuple[np.ndarray, ...]:
    """Sum the weights of duplicate (u, v) edges."""
    keys, inverse = np.unique(u * count + v, return_inverse=True)
    return keys // count, keys % count, np.bincount(inverse, weights=w).astype(np.int64)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        described = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"partitioners take a uint8 RGB array of shape (H, W, 3), got {described}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


PARTITIONERS: Registry[type[Partitioner]] = Registry("partitioner")


class Partitioner(ABC):
    """Splits a uint8 RGB image (H, W, 3) into at most ``max_regions`` regions labelled 0..K-1 (int64)."""

    name: ClassVar[str]
    max_regions: int

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Label map (H, W) int64 with contiguous labels 0..K-1, K <= ``max_regions``."""
        labels = self._segment(_check_image(image))
        return merge_small_regions(labels, self.max_regions)

    @abstractmethod
    def _segment(self, image: np.ndarray) -> np.ndarray:
        """Raw segmentation of a checked image: any integer labels, any count."""

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters including ``name``; ``make_partitioner(**params)`` rebuilds this."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params.items() if key != "name")
        return f"{type(self).__name__}({arguments})"


def fast_slic_available() -> bool:
    """Whether the optional ``fast_slic`` package can be imported."""
    return importlib.util.find_spec("fast_slic") is not None


def resolve_slic_backend(backend: str) -> str:
    """Map ``"auto"`` to ``"fast_slic"`` when installed, else ``"skimage"``; check explicit choices."""
    if backend not in SLIC_BACKENDS:
        raise ConfigError(f"SLIC backend must be one of {SLIC_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "fast_slic" if fast_slic_available() else "skimage"
    if backend == "fast_slic" and not fast_slic_available():
        raise ConfigError("SLIC backend 'fast_slic' needs the fast-slic package: pip install 'p2pvision[fast]'")
    return backend


@PARTITIONERS.register()
class SlicPartitioner(Partitioner):
    """SLIC superpixels on the RGB image (converted to CIELAB), as in P2P (100 segments, compactness 20).

    ``backend``: ``"skimage"`` (scikit-image ``slic``), ``"fast_slic"`` (the ``fast-slic`` package the paper's
    reference uses; about 10x faster, slightly different segments) or ``"auto"`` (fast-slic when installed).
    The resolved backend is part of ``params``. fast-slic keeps cluster centres between calls of one ``Slic``
    object (a warm start that makes results depend on data order), so a fresh object is made per image;
    it runs single-threaded because :func:`partition_batch` parallelises over images.
    """

    name = "slic"

    def __init__(
        self, n_segments: int = 100, compactness: float = 20.0, max_regions: int | None = None, backend: str = "auto"
    ) -> None:
        self.n_segments = _positive_int("n_segments", n_segments)
        self.compactness = _positive_float("compactness", compactness)
        self.max_regions = _positive_int("max_regions", self.n_segments if max_regions is None else max_regions)
        self.backend = resolve_slic_backend(backend)

    def _segment(self, image: np.ndarray) -> np.ndarray:
        if self.backend == "fast_slic":
            return self._fast_slic_class()(
                num_components=self.n_segments, compactness=self.compactness, num_threads=1
            ).iterate(image)
        return slic(image, n_segments=self.n_segments, compactness=self.compactness, start_label=0, channel_axis=-1)

    @staticmethod
    def _fast_slic_class() -> type:
        try:
            from fast_slic.avx2 import (
                SlicAvx2,  # raises ImportError when built without AVX2
            )

            return SlicAvx2
        except ImportError:
            from fast_slic import Slic

            return Slic

    @property
    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n_segments": self.n_segments,
            "compactness": self.compactness,
            "max_regions": self.max_regions,
            "backend": self.backend,
        }


@PARTITIONERS.register()
class FelzenszwalbPartitioner(Partitioner):
    """Felzenszwalb's graph-based segmentation (scikit-image); larger ``scale`` gives fewer, larger regions."""

    name = "felzenszwalb"

    def __init__(self, scale: float = 200.0, sigma: float = 0.8, min_size: int = 50, max_regions: int = 100) -> None:
        self.scale = _positive_float("scale", scale)
        self.sigma = float(sigma)
        if self.sigma < 0:
            raise ConfigError(f"sigma must be >= 0, got {sigma!r}")
        self.min_size = _positive_int("min_size", min_size)
        self.max_regions = _positive_int("max_regions", max_regions)

    def _segment(self, image: np.ndarray) -> np.ndarray:
        return felzenszwalb(image, scale=self.scale, sigma=self.sigma, min_size=self.min_size, channel_axis=-1)

    @property
    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scale": self.scale,
            "sigma": self.sigma,
            "min_size": self.min_size,
            "max_regions": self.max_regions,
        }


def _grid_shape(height: int, width: int, cells: int) -> tuple[int, int]:
    """Rows and columns of a grid with at most ``cells`` cells that are as square as possible."""
    rows = max(1, min(height, cells, round(math.sqrt(cells * height / width))))
    cols = max(1, min(width, cells // rows))
    return rows, cols


@PARTITIONERS.register()
class WatershedPartitioner(Partitioner):
    """Compact watershed on the Sobel gradient of the grey image, flooded from markers on a regular grid.

    The markers are placed here rather than by scikit-image's integer ``markers`` option, which may place
    more seeds than asked for; this grid has at most ``n_markers`` cells, so K <= ``n_markers``.
    """

    name = "watershed"

    def __init__(self, n_markers: int = 100, compactness: float = 0.001) -> None:
        self.n_markers = _positive_int("n_markers", n_markers)
        self.compactness = float(compactness)
        if self.compactness < 0:
            raise ConfigError(f"compactness must be >= 0, got {compactness!r}")
        self.max_regions = self.n_markers

    def _segment(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        rows, cols = _grid_shape(height, width, self.n_markers)
        markers = np.zeros((height, width), dtype=np.int64)
        centre_rows = ((np.arange(rows) + 0.5) * height / rows).astype(np.int64)
        centre_cols = ((np.arange(cols) + 0.5) * width / cols).astype(np.int64)
        markers[np.ix_(centre_rows, centre_cols)] = np.arange(1, rows * cols + 1).reshape(rows, cols)
        return watershed(sobel(rgb2gray(image)), markers=markers, compactness=self.compactness)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "n_markers": self.n_markers, "compactness": self.compactness}


@PARTITIONERS.register()
class GridPartitioner(Partitioner):
    """A regular grid: ``grid`` cells (rows, cols) over any image size, or cells of ``patch_size`` pixels.

    With ``grid`` (14 x 14 when neither is given) the image is cut into exactly rows x cols cells (fewer only
    if the image is smaller). With ``patch_size`` (e.g. 16 for ViT patches) ``max_regions`` must be given (the
    number of patches on the largest image expected); an image with more patches gets some merged.
    """

    name = "grid"

    def __init__(
        self,
        grid: int | tuple[int, int] | None = None,
        patch_size: int | tuple[int, int] | None = None,
        max_regions: int | None = None,
    ) -> None:
        if grid is not None and patch_size is not None:
            raise ConfigError("give either grid=(rows, cols) or patch_size=(height, width), not both")
        if grid is None and patch_size is None:
            grid = 14
        self.grid = None if grid is None else _pair("grid", grid)
        self.patch_size = None if patch_size is None else _pair("patch_size", patch_size)
        if self.grid is not None:
            cells = self.grid[0] * self.grid[1]
            self.max_regions = _positive_int("max_regions", cells if max_regions is None else max_regions)
        elif max_regions is None:
            raise ConfigError("GridPartitioner(patch_size=...) needs max_regions (patches on the largest image)")
        else:
            self.max_regions = _positive_int("max_regions", max_regions)

    def _segment(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        if self.grid is not None:
            rows, cols = min(self.grid[0], height), min(self.grid[1], width)
            row_index = np.arange(height) * rows // height
            col_index = np.arange(width) * cols // width
        elif self.patch_size is not None:
            cols = -(-width // self.patch_size[1])
            row_index = np.arange(height) // self.patch_size[0]
            col_index = np.arange(width) // self.patch_size[1]
        else:
            raise ConfigError("GridPartitioner needs grid or patch_size; both are None")
        return row_index[:, None] * cols + col_index[None, :]

    @property
    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "grid": None if self.grid is None else list(self.grid),
            "patch_size": None if self.patch_size is None else list(self.patch_size),
            "max_regions": self.max_regions,
        }


@PARTITIONERS.register()
class PixelPartitioner(Partitioner):
    """Every pixel is its own region (pixel-level feature selection); ``max_regions`` is H*W of the largest image."""

    name = "pixels"

    def __init__(self, max_regions: int = 224 * 224) -> None:
        self.max_regions = _positive_int("max_regions", max_regions)

    def _segment(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        return np.arange(height * width, dtype=np.int64).reshape(height, width)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "max_regions": self.max_regions}


def partitioner_names() -> list[str]:
    """Names accepted by :func:`make_partitioner`."""
    return sorted(PARTITIONERS.names())


def make_partitioner(name: str, **params: Any) -> Partitioner:
    """Build a partitioner by name (``slic``, ``felzenszwalb``, ``watershed``, ``grid``, ``pixels``)."""
    return PARTITIONERS.create(name, **params)


def _ignores_pixels(partitioner: Partitioner) -> bool:
    """Whether ``partitioner``'s labels depend on the image's size only (a grid, one region per pixel), as its class
    does not override how it segments."""
    cls = type(partitioner)
    size_only = (GridPartitioner._segment, PixelPartitioner._segment)
    return cls.__call__ is Partitioner.__call__ and cls._segment in size_only


def partition_batch(images: Tensor, partitioner: Partitioner, num_workers: int | None = None) -> Tensor:
    """Partition a batch of float images (B, 3, H, W) in [0, 1]: -> int64 label maps (B, H, W).

    Images are rounded to uint8 first. ``num_workers`` > 0 runs that many threads, 0 none; None (the default) as
    many as torch computes with (``torch.get_num_threads()``: 1 in a data loader's worker process), which sit idle
    while the images are segmented. The segmentation kernels of scikit-image and fast-slic release the GIL, so
    threads give a speed-up without the cost of sending images to other processes where the kernel does (64 SLIC
    superpixel maps of 64 px on 2 cores: 50 -> 38 ms median; of 224 px: 428 -> 264 ms; on an AVX-512 Xeon fast-slic
    gained nothing at 64 px: 22 ms with one thread, 25 with two). The result is on the images' device and
    does not depend on the threads. A grid or pixel partitioner, whose labels depend on the image size only,
    labels one image and gives every image its map.
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    if num_workers is None:
        num_workers = torch.get_num_threads()
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    if len(images) and _ignores_pixels(partitioner):  # one label map serves every image of the batch
        label_map = partitioner(np.zeros((*images.shape[2:], 3), dtype=np.uint8))
        return torch.from_numpy(label_map).to(images.device).expand(len(images), -1, -1).clone()
    arrays = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if num_workers <= 1 or len(arrays) <= 1:
        labels = [partitioner(array) for array in arrays]
    else:
        chunks = np.array_split(arrays, min(num_workers, len(arrays)))  # one run of images per thread
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            labels = [label for chunk in pool.map(lambda run: [partitioner(a) for a in run], chunks) for label in chunk]
    if not labels:
        return torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.int64, device=images.device)
    return torch.from_numpy(np.stack(labels)).to(images.device)
