"""The data sets a benchmark evaluates on: the built-in and local data sets of training (a ``data`` section as in
the training configs) and the bundled photos (no labels, no masks: faithfulness and cost only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from p2pvision.data.sources import scene_photos
from p2pvision.errors import ConfigError

if TYPE_CHECKING:
    from p2pvision.data.builtin import SemiSyntheticDataset
    from p2pvision.data.cifar import Cifar10Dataset
    from p2pvision.data.folders import FileListDataset

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "china", "flower")


class BundledPhotos(Dataset):
    """The photos that ship with scikit-image and scikit-learn, resized (shorter side ``image_size / 0.875``) and
    centre-cropped to ``image_size`` as ImageNet classifiers expect. Labels are unknown (-1)."""

    def __init__(self, image_size: int = 224, names: tuple[str, ...] = PHOTOS) -> None:
        self.names = tuple(names)
        self.classes: list[str] | None = None
        self.has_masks = False
        side = int(round(image_size / 0.875))
        self.images = []
        for photo in scene_photos(self.names):
            picture = Image.fromarray(photo.image)
            scale = side / min(picture.size)
            size = (round(picture.width * scale), round(picture.height * scale))
            picture = picture.resize(size, Image.Resampling.BICUBIC)
            left, top = (picture.width - image_size) // 2, (picture.height - image_size) // 2
            picture = picture.crop((left, top, left + image_size, top + image_size))
            self.images.append(torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255)  # a writable copy

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": -1, "index": index}


class ImageSubset(Subset):
    """Some images of an evaluation data set, with the data set's ``classes`` (None when unknown) and ``has_masks``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], classes: list[str] | None, has_masks: bool) -> None:
        super().__init__(dataset, indices)
        self.classes, self.has_masks = classes, has_masks


# What open_dataset gives: a sized data set with ``classes`` (None when unknown) and ``has_masks``.
EvaluationDataset: TypeAlias = "BundledPhotos | SemiSyntheticDataset | FileListDataset | Cifar10Dataset | ImageSubset"


def open_dataset(data: dict[str, Any], split: str = "test", images: int | None = None) -> EvaluationDataset:
    """The evaluation images of a ``data`` section (training-config fields, or ``source: photos``), at most
    ``images`` of them; the result has ``classes`` (None when unknown) and ``has_masks``."""
    from p2pvision.train.data import base_dataset
    from p2pvision.train.experiment import experiment_from_dict

    data = dict(data)
    if data.get("source") == "photos":
        unknown = sorted(set(data) - {"source", "image_size", "names"})
        if unknown:
            raise ConfigError(f"data settings {', '.join(unknown)} do not apply to the photos: use image_size, names")
        dataset: EvaluationDataset = BundledPhotos(int(data.get("image_size", 224)), tuple(data.get("names", PHOTOS)))
    else:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"split must be train, val or test, got {split!r}")
        dataset, _ = base_dataset(experiment_from_dict({"data": data}).data, split)
    if images is not None:
        if images < 1:
            raise ConfigError(f"images must be a positive number of images, got {images}")
        dataset = ImageSubset(dataset, range(min(images, len(dataset))), dataset.classes, bool(dataset.has_masks))
    return dataset
