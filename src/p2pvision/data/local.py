"""Open a data set the user has on disk by format name (used by the CLI and experiment configs)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from p2pvision.errors import ConfigError

if TYPE_CHECKING:  # keep this module free of torch and numpy so that the CLI starts fast
    import numpy as np

    from p2pvision.data.cifar import Cifar10Dataset
    from p2pvision.data.folders import FileListDataset

FORMATS = ("imagefolder", "cifar10", "imagenet", "imagenet9", "coco10", "bam")


class SizedDataset(Protocol):
    """A map-style data set of dict samples (``image``, ``label``, ...) that knows its length."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...


class ClassDataset(SizedDataset, Protocol):
    """A sized data set with class names, ``label`` indexing ``classes`` (as every loader of p2pvision.data)."""

    @property
    def classes(self) -> Sequence[str]: ...


def open_local_dataset(
    format: str,
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    masks: str | os.PathLike[str] | None = None,
    variant: str = "original",
    task: str = "obj",
    transform: Callable[[dict], dict] | None = None,
) -> FileListDataset | Cifar10Dataset:
    """A local data set of ``format`` (one of :data:`FORMATS`) at ``root``.

    ``split`` defaults to each format's usual evaluation split; ``masks`` is the masks folder of an
    ImageFolder; ``variant`` the ImageNet-9 variant; ``task`` the BAM labelling ("obj" or "scene").
    """
    from p2pvision.data import cifar, folders, imagenet

    if format == "imagefolder":
        return folders.ImageFolderDataset(root, masks_root=masks, transform=transform)
    if format == "cifar10":
        return cifar.Cifar10Dataset(root, split or "test", transform=transform)
    if format == "imagenet":
        return imagenet.ImageNetDataset(root, split or "val", transform=transform)
    if format == "imagenet9":
        return imagenet.ImageNet9Dataset(root, variant=variant, split=split or "val", transform=transform)
    if format == "coco10":
        return folders.MaskedImageDataset(root, split or "test", transform=transform)
    if format == "bam":
        return folders.BamDataset(root, task=task, split=split or "val", transform=transform)
    raise ConfigError(f"data set format '{format}' is unknown: use one of {', '.join(FORMATS)}")


def dataset_labels(dataset: SizedDataset) -> np.ndarray:
    """All labels of a data set without loading its images where the data set allows it."""
    import numpy as np

    if hasattr(dataset, "labels"):
        return np.asarray(dataset.labels)
    if hasattr(dataset, "samples"):
        return np.asarray([label for _, label in dataset.samples])
    return np.asarray([dataset[i]["label"] for i in range(len(dataset))])
