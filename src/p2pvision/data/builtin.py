"""The built-in semi-synthetic data set as a torch ``Dataset`` of dict samples (see ``semisynthetic``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from p2pvision.data.semisynthetic import (
    SPLITS,
    TASKS,
    SemiSyntheticConfig,
    build_semisynthetic,
)
from p2pvision.errors import ConfigError


class SemiSyntheticDataset(torch.utils.data.Dataset):
    """One split of the built-in data set for one task, as dict samples.

    Each sample has ``image`` (3,H,W) float in [0,1], ``label``, ``mask`` (the region relevant to the task:
    the object for the object task, everything but the object for the scene task), ``object_mask`` and
    ``index``; ``transform`` (a joint transform on the sample dict) is applied last.
    """

    def __init__(
        self,
        split: str = "train",
        task: str = "object",
        config: SemiSyntheticConfig | None = None,
        transform: Callable[[dict], dict] | None = None,
        root: str | os.PathLike[str] | None = None,
        progress: bool = True,
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"split '{split}' is unknown: use one of {', '.join(SPLITS)}")
        if task not in TASKS:
            raise ConfigError(f"task '{task}' is unknown: use 'object' or 'scene'")
        self.data = build_semisynthetic(config, root=root, progress=progress)
        self.split, self.task, self.transform = split, task, transform
        self.arrays = self.data.split(split)
        self.classes = list(self.data.object_classes if task == "object" else self.data.scene_classes)
        self.labels = self.arrays.object_labels if task == "object" else self.arrays.scene_labels
        self.has_masks = True

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def relevant_area_share(self) -> float:
        """Mean share of the image that is relevant to the task (chance level of localisation precision)."""
        share = self.data.object_area_share(self.split)
        return share if self.task == "object" else 1.0 - share

    def fingerprint(self) -> str:
        """Identifies the images this data set gives: its split and transform (keys caches such as region maps)."""
        return f"semisynthetic-{self.data.config.key()}-{self.split}-{self.transform!r}"

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(np.array(self.arrays.images[index])).permute(2, 0, 1).float().div_(255)
        object_mask = torch.from_numpy(np.array(self.arrays.object_masks[index]))
        sample = {
            "image": image,
            "label": int(self.labels[index]),
            "mask": object_mask if self.task == "object" else ~object_mask,
            "object_mask": object_mask,
            "index": index,
        }
        return self.transform(sample) if self.transform is not None else sample
