"""Data sets with cached region maps and the Lightning data module that feeds training and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.local import FORMATS, open_local_dataset
from p2pvision.data.region_cache import ComputeRegions, RegionDataset
from p2pvision.data.semisynthetic import SemiSyntheticConfig
from p2pvision.data.transforms import (
    BatchAugmentation,
    ColorJitter,
    JointCenterCrop,
    JointCompose,
    JointRandomHorizontalFlip,
    JointRandomResizedCrop,
    JointResize,
)
from p2pvision.errors import ConfigError
from p2pvision.regions.partition import Partitioner, make_partitioner
from p2pvision.train.experiment import DataConfig

if TYPE_CHECKING:
    from p2pvision.data.cifar import Cifar10Dataset
    from p2pvision.data.folders import FileListDataset

# (train, val, test) split names per local format; None: hold out val_fraction of the training split.
SPLITS_BY_FORMAT: dict[str, tuple[str, str | None, str]] = {
    "imagefolder": ("train", "val", "test"),
    "cifar10": ("train", None, "test"),
    "imagenet": ("train", None, "val"),
    "imagenet9": ("train", None, "val"),
    "coco10": ("train", None, "test"),
    "bam": ("train", None, "val"),
}
STAGES = ("train", "val", "test")


def augmentation(config: DataConfig) -> BatchAugmentation:
    """Training augmentation, applied jointly to images, masks and region maps: random resized crop, then the
    optional flip and colour jitter. Applied to whole batches (:meth:`BatchAugmentation.__call__`) where region maps
    are cached; without a cache, its steps run per sample before the regions of each augmented view are computed
    (:meth:`BatchAugmentation.per_sample`)."""
    c = config.color_jitter
    return BatchAugmentation(
        JointRandomResizedCrop(config.image_size, scale=config.crop_scale),
        JointRandomHorizontalFlip() if config.flip else None,
        ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.5, c / 2)) if c > 0 else None,
    )


def augmentation_generator(seed: int, epoch: int, rank: int, batch: int) -> torch.Generator:
    """The CPU generator of one training batch's augmentation, from (seed, epoch, rank, batch index) only: a
    resumed run draws what an uninterrupted one draws, whatever ran before in the process."""
    state = np.random.SeedSequence([seed, epoch, rank, batch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def split_names(config: DataConfig) -> tuple[str, str | None, str]:
    """(train, val, test) split names of a local format; val None means: held out of the training split."""
    train, val, test = SPLITS_BY_FORMAT[config.source]
    return config.train_split or train, config.val_split or val, config.test_split or test


def base_dataset(config: DataConfig, stage: str) -> tuple[SemiSyntheticDataset | FileListDataset | Cifar10Dataset, str]:
    """The un-augmented images of a stage, and the split they come from."""
    if config.source == "semisynthetic":
        generation = SemiSyntheticConfig(
            image_size=config.image_size,
            n_train=config.n_train,
            n_val=config.n_val,
            n_test=config.n_test,
            objects=config.objects,
            seed=config.data_seed,
        )
        return SemiSyntheticDataset(stage, config.task, generation), stage
    if config.source not in FORMATS:
        raise ConfigError(f"data.source '{config.source}' is unknown: use semisynthetic or one of {', '.join(FORMATS)}")
    if config.root is None:
        raise ConfigError(f"data.root is required for data.source '{config.source}': the folder holding the data")
    names = split_names(config)
    split = names[STAGES.index(stage)] or names[0]  # held-out validation comes from the training split
    resize = JointCompose([JointResize(config.image_size), JointCenterCrop(config.image_size)])
    masks = None
    if config.source == "imagefolder":
        masks = f"{config.masks}/{split}" if config.masks else None
        return open_local_dataset("imagefolder", f"{config.root}/{split}", masks=masks, transform=resize), split
    task = config.task if config.source == "bam" else "obj"
    return open_local_dataset(config.source, config.root, split, transform=resize, task=task), split


def holdout_indices(size: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) index arrays: a seeded random ``fraction`` of ``size`` is held out."""
    order = np.random.default_rng(seed).permutation(size)
    count = max(1, int(round(size * fraction)))
    return np.sort(order[count:]), np.sort(order[:count])


def build_stage(config: DataConfig, stage: str, partitioner: Partitioner, progress: bool = True) -> Dataset:
    """The data set of one stage with a ``regions`` entry per sample. With cached region maps the samples are not
    augmented (training augments whole batches: :meth:`P2PDataModule.on_after_batch_transfer`); without a cache,
    training samples are augmented one by one and the regions of each augmented view are computed."""
    base, split = base_dataset(config, stage)
    if config.region_cache:
        dataset: Dataset = RegionDataset(base, partitioner, progress=progress)
    else:
        steps: list[Callable[[dict], dict]] = [augmentation(config).per_sample()] if stage == "train" else []
        steps.append(ComputeRegions(partitioner))
        base.transform = JointCompose([base.transform, *steps]) if base.transform else JointCompose(steps)
        dataset = base
    if config.source != "semisynthetic" and stage in ("train", "val") and split_names(config)[1] is None:
        train_rows, val_rows = holdout_indices(len(base), config.val_fraction, config.data_seed)
        dataset = Subset(dataset, (train_rows if stage == "train" else val_rows).tolist())
    dataset.classes = list(base.classes)  # type: ignore[attr-defined]
    dataset.has_masks = bool(getattr(base, "has_masks", False))  # type: ignore[attr-defined]
    dataset.split = split  # type: ignore[attr-defined]
    return dataset


class P2PDataModule(L.LightningDataModule):
    """Train / val / test loaders with cached region maps; shuffling is seeded per epoch for exact resumes.

    With cached region maps (``data.region_cache``), training batches are augmented as a whole on the training
    device, after Lightning moves them there (:meth:`on_after_batch_transfer`), so the loader only indexes and
    collates. ``benchmarks/bench_data_loading.py`` (SimpleProfiler, demo config, 2 loaded CPU cores) measured data
    input at 14.1-14.6% of a P2P fit with the per-sample path (four ``resized_crop`` calls and a sort per sample)
    and 2.6-2.7% now, 5.5-5.8x less per batch. Each batch's draws come from its own generator
    (:func:`augmentation_generator`), so runs resume exactly and loader workers draw nothing: ``data.num_workers``
    changes no result. It stays 0 by default: with plain indexing left, workers only add inter-process transfer on
    2 cores (a loader pass took 110 ms per batch in-process, 168 and 146 ms with 1 and 2 workers); give them where
    cores are spare and steps are short (a GPU host). Without a cache the regions of every augmented view are
    computed in the loader (see :func:`build_stage`), which is then where the augmentation runs too.
    """

    def __init__(self, config: DataConfig, partition: dict, batch_size: int, seed: int, progress: bool = True) -> None:
        super().__init__()
        self.config, self.partition, self.batch_size, self.seed = config, dict(partition), batch_size, seed
        self.progress = progress
        self.datasets: dict[str, Dataset] = {}
        self.augment = augmentation(config) if config.region_cache else None

    def prepare_data(self) -> None:
        """Generate data and region caches once (on the first process only)."""
        for stage in STAGES:
            build_stage(self.config, stage, make_partitioner(**self.partition), progress=self.progress)

    def setup(self, stage: str | None = None) -> None:
        partitioner = make_partitioner(**self.partition)
        for name in STAGES:
            if name not in self.datasets:
                self.datasets[name] = build_stage(self.config, name, partitioner, progress=False)

    @property
    def classes(self) -> list[str]:
        self.setup()
        return self.datasets["train"].classes  # type: ignore[attr-defined]

    def _loader(self, stage: str) -> DataLoader:
        dataset = self.datasets[stage]
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        train = stage == "train"
        sampler: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=train, seed=self.seed, drop_last=train
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            drop_last=train,
            persistent_workers=False,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches (not validation or test ones) on their device."""
        trainer = self.trainer
        if self.augment is None or trainer is None or not trainer.training:
            return batch
        # batches of this epoch made ready so far: the index of this one (Lightning counts it after this hook)
        index = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        generator = augmentation_generator(self.seed, trainer.current_epoch, trainer.global_rank, index)
        return self.augment(batch, generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
