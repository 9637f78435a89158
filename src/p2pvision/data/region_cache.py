"""Region label maps computed once per image of a fixed data set and cached on disk.

Training augments the image, its region map and its mask together (``p2pvision.data.transforms``) instead
of re-segmenting every augmented view in the data loader, which is the CPU bottleneck of the reference
code. :class:`RegionDataset` adds a ``regions`` entry to each sample of a base data set and then applies
the (joint) training transform.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from p2pvision.cache import atomic_path, cache_dir, params_key
from p2pvision.data.local import ClassDataset, SizedDataset
from p2pvision.errors import ConfigError
from p2pvision.regions.partition import Partitioner, partition_batch

_CHUNK = 256


def dataset_fingerprint(dataset: SizedDataset) -> str:
    """A string that changes when the images of ``dataset`` change.

    Uses ``dataset.fingerprint()`` when the data set defines it; otherwise the list of image files in
    ``dataset.samples`` (path, size and modification time of each) plus the data set's transform.
    """
    if hasattr(dataset, "fingerprint"):
        return str(dataset.fingerprint())
    samples = getattr(dataset, "samples", None)
    if samples is None:
        raise ConfigError(
            f"cannot identify the images of {type(dataset).__name__} for caching region maps: "
            "give it a fingerprint() method or pass key=... to region_maps()"
        )
    files = []
    for sample in samples:
        path = Path(sample[0] if isinstance(sample, (tuple, list)) else sample)
        stat = path.stat()
        files.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    transform = repr(getattr(dataset, "transform", None))
    return f"{type(dataset).__name__}-{params_key({'files': files, 'transform': transform})}"


def region_maps(
    dataset: SizedDataset,
    partitioner: Partitioner,
    *,
    key: str | None = None,
    root: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Label maps (N,H,W) of every image of ``dataset``, memory-mapped from the cache (computed on first use).

    The data set must give every image at the same size and must not augment randomly (give it a
    deterministic resize if its files differ in size). ``num_workers`` threads segment in parallel
    (default: all cores).
    """
    identity = key or dataset_fingerprint(dataset)
    folder = Path(root) if root is not None else cache_dir() / "regions"
    path = folder / f"{params_key({'data': identity, 'partition': partitioner.params})}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    workers = os.cpu_count() or 1 if num_workers is None else num_workers
    n = len(dataset)
    if n == 0:
        raise ConfigError("the data set is empty: there are no images to partition")
    dtype = np.int16 if partitioner.max_regions <= np.iinfo(np.int16).max else np.int32
    maps: np.ndarray | None = None
    with tqdm(total=n, desc=f"regions ({partitioner})", unit="img", disable=not progress) as bar:
        for start in range(0, n, _CHUNK):
            images = [dataset[i]["image"] for i in range(start, min(start + _CHUNK, n))]
            shapes = {tuple(image.shape) for image in images} | ({(3, *maps.shape[1:])} if maps is not None else set())
            if len(shapes) > 1:
                raise ConfigError(
                    f"images of {type(dataset).__name__} differ in size ({', '.join(map(str, sorted(shapes)))}): "
                    "give the data set a deterministic resize transform (JointResize) before computing regions"
                )
            labels = partition_batch(torch.stack(images), partitioner, num_workers=workers).numpy()
            if maps is None:
                maps = np.empty((n, *labels.shape[1:]), dtype)
            maps[start : start + len(labels)] = labels
            bar.update(len(labels))
    if maps is None:  # n > 0, so the loop above allocated it
        raise RuntimeError(f"no region maps were computed for the {n} images of {type(dataset).__name__}")
    with atomic_path(path) as tmp:
        np.save(tmp, maps)
    return np.load(path, mmap_mode="r")


class RegionDataset(Dataset):
    """A data set whose samples carry a cached ``regions`` label map, transformed jointly with the image.

    ``dataset`` gives the base samples (no random augmentation); ``transform`` is applied to the sample
    dict after ``regions`` is added, so flips and crops move image, mask and regions together.
    """

    def __init__(
        self,
        dataset: ClassDataset,
        partitioner: Partitioner,
        transform: Callable[[dict], dict] | None = None,
        *,
        key: str | None = None,
        root: str | os.PathLike[str] | None = None,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.dataset = dataset
        self.partitioner = partitioner
        self.transform = transform
        self.maps = region_maps(dataset, partitioner, key=key, root=root, num_workers=num_workers, progress=progress)
        self.classes = dataset.classes
        self.has_masks = getattr(dataset, "has_masks", False)
        self.max_regions = partitioner.max_regions

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = dict(self.dataset[index])
        sample["regions"] = torch.from_numpy(self.maps[index].astype(np.int64))
        return self.transform(sample) if self.transform is not None else sample


class ComputeRegions:
    """A joint transform that segments the (augmented) image itself: for data sets too large to cache.

    This is the reference code's approach (a CPU cost on every view); prefer :class:`RegionDataset`.
    """

    def __init__(self, partitioner: Partitioner) -> None:
        self.partitioner = partitioner

    def __call__(self, sample: dict) -> dict:
        image = (sample["image"].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return {**sample, "regions": torch.from_numpy(self.partitioner(image))}

    def __repr__(self) -> str:
        return f"ComputeRegions({self.partitioner!r})"
