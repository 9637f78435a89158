"""CIFAR-10 from the "python version" download (https://www.cs.toronto.edu/~kriz/cifar.html)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from p2pvision.cache import params_key
from p2pvision.data.folders import Transform
from p2pvision.data.safe_pickle import load_pickle_file
from p2pvision.errors import ConfigError, DatasetLayoutError

__all__ = ["CIFAR10_CLASSES", "Cifar10Dataset"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_BATCH_FOLDER = "cifar-10-batches-py"
_SPLIT_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _unpickle(path: Path) -> dict:
    content = load_pickle_file(path, "CIFAR-10 batch")  # plain values and NumPy arrays only: never code
    if not isinstance(content, dict):
        raise DatasetLayoutError(f"'{path}' holds a {type(content).__name__}: expected a pickled dict")
    return content


class Cifar10Dataset(Dataset):
    """One split of CIFAR-10 (train: 50,000 images, test: 10,000; 32x32 RGB) as dict samples.

    ``root`` is the ``cifar-10-batches-py`` folder or its parent. The split's batches (``data_batch_1`` to
    ``data_batch_5``, or ``test_batch``) are pickled dicts with ``b"data"`` (N,3072) uint8 (channel-major rows)
    and ``b"labels"``; class names come from ``batches.meta`` (``b"label_names"``) when present. Samples are
    ``{"image": (3,32,32) float in [0,1], "label", "index"}``; there are no masks. The files are Python pickles:
    they are read with a restricted unpickler that loads plain values and NumPy arrays only, never code.
    """

    has_masks = False

    def __init__(self, root: str | os.PathLike[str], split: str = "train", transform: Transform | None = None) -> None:
        if split not in _SPLIT_FILES:
            raise ConfigError(f"CIFAR-10 split '{split}' is unknown: use 'train' or 'test'")
        root = Path(root)
        folder = root / _BATCH_FOLDER if (root / _BATCH_FOLDER).is_dir() else root
        paths = [folder / name for name in _SPLIT_FILES[split]]
        missing = next((path for path in paths if not path.is_file()), None)
        if missing is not None:
            raise DatasetLayoutError(
                f"'{missing}' does not exist: expected the CIFAR-10 python version (data_batch_1..5, test_batch, "
                f"batches.meta) in '{root}/{_BATCH_FOLDER}' or '{root}'"
            )
        images, labels = [], []
        for path in paths:
            batch = _unpickle(path)
            data, batch_labels = batch.get(b"data"), batch.get(b"labels")
            if (
                not isinstance(data, np.ndarray)
                or data.dtype != np.uint8
                or data.ndim != 2
                or data.shape[1] != 3072
                or batch_labels is None
                or len(batch_labels) != len(data)
            ):
                raise DatasetLayoutError(
                    f"'{path}' is not a CIFAR-10 batch: expected a dict with b'data' (N,3072) uint8 and N b'labels'"
                )
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch_labels, dtype=np.int64))
        self.images = np.concatenate(images)
        self.labels = np.concatenate(labels)
        meta = folder / "batches.meta"
        names = _unpickle(meta).get(b"label_names") if meta.is_file() else None
        names = names or [name.encode() for name in CIFAR10_CLASSES]
        self.classes = [name.decode() if isinstance(name, bytes) else str(name) for name in names]
        if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() < len(self.classes):
            raise DatasetLayoutError(f"labels in '{folder}' fall outside 0..{len(self.classes) - 1}")
        self.root, self.split, self.transform = folder, split, transform
        self._paths = paths

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """Identifies the images this data set gives (batch files and transform); keys caches of region maps."""
        files = [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns) for path in self._paths]
        return f"{type(self).__name__}-{params_key({'files': files, 'transform': repr(self.transform)})}"

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a data set of {len(self)} images")
        index %= len(self)
        image = torch.from_numpy(self.images[index]).float().div_(255.0)
        sample = {"image": image, "label": int(self.labels[index]), "index": index}
        return self.transform(sample) if self.transform is not None else sample
