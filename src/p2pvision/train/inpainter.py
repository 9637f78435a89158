"""Training the learned inpainter (:mod:`p2pvision.removal.learned`): a config kind of its own, on Lightning.

A config with ``kind: inpainter`` (``configs/inpainter.yaml``) has ``data`` (where crops come from: ``photos``, the
built-in data's background photos, each cut into train / val / test zones as the built-in data set does;
``semisynthetic``, the built-in images themselves; ``folder``, any folder of image files, searched recursively,
with files held out for val and test), ``holes`` (the random holes, shaped like the removals the fill will serve:
SLIC superpixel subsets as LIME and the superpixel games remove, square patches and grid cells as the sliding patch
and MoXI remove, smooth blobs as meaningful perturbation's upsampled masks), ``model`` (the network) and ``train``
(as for P2P: epochs, batch size, learning rate, seed, Lightning's ``trainer`` arguments: CPU, GPU, DDP). Run it with
``p2pvision train --config inpainter``: checkpoints every epoch, ``--resume``, and ``out/model`` (safetensors +
config.json) for ``--removal learned:out/model``. The loss is each image's mean L1 error inside the hole (the
network fills only the hole: the removal keeps the known pixels), averaged over the batch; at the end the held-out
crops are filled by the network, by OpenCV's Telea and by the mean colour of the known pixels, and the L1 error
inside the hole of each goes to ``out/metrics.json``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from p2pvision.cache import atomic_path, write_json
from p2pvision.config import (
    Fraction,
    Int,
    Name,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Section,
    apply_overrides,
    error_at,
    read_config,
    validate,
)
from p2pvision.data.folders import IMAGE_EXTENSIONS
from p2pvision.data.semisynthetic import SemiSyntheticConfig, Split, build_semisynthetic
from p2pvision.data.semisynthetic import _zones as photo_zones
from p2pvision.data.sources import scene_photos
from p2pvision.errors import ConfigError, DatasetLayoutError, path_problem
from p2pvision.io import load_image
from p2pvision.regions import make_partitioner
from p2pvision.removal import GatedInpainter, TeleaInpaint, save_inpainter
from p2pvision.train.experiment import SHIPPED_CONFIGS, TrainingTrainerArgs

KIND = "inpainter"
HOLE_KINDS = ("superpixels", "patches", "blobs")
STAGES: tuple[Split, ...] = ("train", "val", "test")
EXPERIMENT_FILE = "experiment.yaml"
_PHOTO_CROP = (0.6, 1.0)  # crop side relative to the smallest zone's short side, as the built-in data set cuts them


class InpainterData(Section):
    """Where the training crops come from (see the module docstring). Crops are cut once per run."""

    source: Literal["photos", "semisynthetic", "folder"] = "photos"
    root: Name | None = None  # source folder: a folder of image files
    image_size: Annotated[Int, Field(ge=16, le=1024)] = 64
    n_train: PositiveInt = 4000
    n_val: PositiveInt = 200
    n_test: PositiveInt = 200
    held_out: OpenFraction = 0.2  # source folder: share of the files for val and test (half each)
    data_seed: NonNegativeInt = 0

    @model_validator(mode="after")
    def _root(self) -> InpainterData:
        if self.source == "folder" and self.root is None:
            raise error_at("root", None, "source folder needs data.root, a folder of image files")
        return self


class HoleSettings(Section):
    """The random holes: ``kinds`` weights how often each shape is drawn; ``share`` is the range of the share of
    superpixels (or of the image, for blobs and grid cells) removed; ``segments`` the range of SLIC segment counts;
    ``patch`` the range of a square patch's side relative to the image side."""

    kinds: dict[Literal[HOLE_KINDS], NonNegativeFloat] = Field(  # type: ignore[valid-type]
        default_factory=lambda: dict.fromkeys(HOLE_KINDS, 1.0)
    )
    share: tuple[Fraction, Fraction] = (0.1, 0.9)
    segments: tuple[PositiveInt, PositiveInt] = (20, 80)
    compactness: PositiveFloat = 20.0
    patch: tuple[Fraction, Fraction] = (0.15, 0.65)

    @model_validator(mode="after")
    def _ranges(self) -> HoleSettings:
        if not any(weight > 0 for weight in self.kinds.values()):
            raise error_at("kinds", self.kinds, f"give at least one of {', '.join(HOLE_KINDS)} a weight > 0")
        for key in ("share", "segments", "patch"):
            low, high = getattr(self, key)
            if low > high:
                raise error_at(key, [low, high], "the low end must be <= the high end")
        return self


class InpainterModel(Section):
    """The network (:class:`~p2pvision.removal.learned.GatedInpainter`)."""

    channels: PositiveInt = 16
    scale: Annotated[Int, Field(ge=1, le=16)] = 8
    dilations: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (1, 2)
    iterations: Annotated[Int, Field(ge=0, le=100)] = 4  # Jacobi steps of the harmonic first fill per level
    fine_iterations: Annotated[Int, Field(ge=0, le=100)] = 2  # at its finest level (2 x 2 pixel cells)


class InpainterTrain(Section):
    """Optimisation and hardware, as for P2P (``trainer``: Lightning's Trainer arguments)."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: PositiveFloat = 2e-3
    weight_decay: NonNegativeFloat = 0.0
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 0
    loggers: tuple[Literal["csv", "tensorboard"], ...] = ("csv",)
    threads: PositiveInt | None = None
    trainer: TrainingTrainerArgs = Field(default_factory=TrainingTrainerArgs)


class InpainterExperiment(Section):
    """A training run of the learned inpainter (``kind: inpainter``)."""

    kind: Literal["inpainter"] = "inpainter"
    name: Name = "inpainter"
    data: InpainterData = Field(default_factory=InpainterData)
    holes: HoleSettings = Field(default_factory=HoleSettings)
    model: InpainterModel = Field(default_factory=InpainterModel)
    train: InpainterTrain = Field(default_factory=InpainterTrain)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def config_kind(path: str | os.PathLike[str] | None) -> str | None:
    """The ``kind`` of a training config file or shipped name (None for P2P's experiment configs)."""
    if path is None:
        return None
    _, data = read_config(Path(path), SHIPPED_CONFIGS, "config file")
    kind = data.get("kind")
    return kind if isinstance(kind, str) else None


def load_inpainter_experiment(
    path: str | os.PathLike[str] | None, overrides: list[str] | None = None
) -> InpainterExperiment:
    """Read an inpainter config (a YAML file or a shipped name; defaults if None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {"kind": KIND}
    if path is not None:
        _, data = read_config(Path(path), SHIPPED_CONFIGS, "config file")
    data = apply_overrides(data, overrides or [], example="train.epochs=3")
    return validate(InpainterExperiment, data)


# ---------------------------------------------------------------------------------------------------------------------
# Crops.


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (size, size), interpolation=interpolation)


def _crop(image: np.ndarray, box: tuple[int, int, int, int], side: int, rng: np.random.Generator) -> np.ndarray:
    y0, x0, y1, x1 = box
    side = max(1, min(side, y1 - y0, x1 - x0))
    top, left = int(rng.integers(y0, y1 - side + 1)), int(rng.integers(x0, x1 - side + 1))
    crop = image[top : top + side, left : left + side]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def photo_crops(stage: str, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` square crops (N,size,size,3) uint8 of the built-in background photos from their ``stage`` zone."""
    rng = np.random.default_rng([seed, STAGES.index(stage), 17])
    photos = scene_photos()
    zones = [photo_zones(photo.box) for photo in photos]
    base = [min(min(z[2] - z[0], z[3] - z[1]) for z in zone.values()) for zone in zones]
    crops = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        which = i % len(photos)
        side = int(base[which] * rng.uniform(*_PHOTO_CROP))
        crops[i] = _resize(_crop(photos[which].image, zones[which][stage], side, rng), size)
    return crops


def folder_crops(root: Path, stage: str, count: int, size: int, held_out: float, seed: int) -> np.ndarray:
    """``count`` square crops of the image files under ``root`` (files split once into train / val / test)."""
    problem = path_problem(root, "folder")
    if problem is not None:
        raise ConfigError(f"data.root '{root}' {problem}: give a folder of image files")
    suffixes = {ext.lower() for ext in IMAGE_EXTENSIONS}
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))  # fmt: skip
    if len(files) < 3:
        raise DatasetLayoutError(f"data.root '{root}' holds {len(files)} image file(s) ({', '.join(sorted(suffixes))}):"
                                 " give at least 3, so that val and test have their own")  # fmt: skip
    order = np.random.default_rng([seed, 29]).permutation(len(files))
    held = max(2, int(round(held_out * len(files))))
    parts = {"val": order[: held // 2], "test": order[held // 2 : held], "train": order[held:]}
    chosen = [files[i] for i in sorted(parts[stage])] or [files[i] for i in sorted(parts["train"])]
    rng = np.random.default_rng([seed, STAGES.index(stage), 31])
    images = [np.asarray(load_image(path, max_side=4 * size)) for path in chosen]
    crops = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        image = images[i % len(images)]
        short = min(image.shape[:2])
        side = int(short * rng.uniform(0.5, 1.0))
        crops[i] = _resize(_crop(image, (0, 0, *image.shape[:2]), side, rng), size)
    return crops


def make_crops(data: InpainterData, stage: str) -> np.ndarray:
    """The crops of ``stage`` (N,H,W,3) uint8."""
    count = int(getattr(data, f"n_{stage}"))
    if data.source == "photos":
        return photo_crops(stage, count, data.image_size, data.data_seed)
    if data.source == "folder":
        return folder_crops(Path(str(data.root)), stage, count, data.image_size, data.held_out, data.data_seed)
    generated = SemiSyntheticConfig(image_size=data.image_size, n_train=data.n_train, n_val=data.n_val,
                                    n_test=data.n_test, seed=data.data_seed)  # fmt: skip
    split = STAGES[STAGES.index(stage)]
    return np.array(build_semisynthetic(generated, progress=False).split(split).images)


# ---------------------------------------------------------------------------------------------------------------------
# Holes.


def superpixel_maps(crops: np.ndarray, holes: HoleSettings, seed: int) -> np.ndarray:
    """One SLIC label map (N,H,W) int16 per crop, with a segment count drawn from ``holes.segments``."""
    rng = np.random.default_rng([seed, 41])
    counts = rng.integers(holes.segments[0], holes.segments[1] + 1, size=len(crops))
    maps = np.empty(crops.shape[:3], np.int16)
    partitioners: dict[int, Any] = {}
    for i, (crop, count) in enumerate(zip(crops, counts)):
        if int(count) not in partitioners:
            partitioners[int(count)] = make_partitioner("slic", n_segments=int(count), compactness=holes.compactness)
        maps[i] = partitioners[int(count)](crop)
    return maps


def draw_holes(
    segments: Tensor, holes: HoleSettings, generator: torch.Generator, kinds: Tensor | None = None
) -> Tensor:
    """Random bool holes (N,H,W) for images with SLIC label maps ``segments`` (N,H,W), each of a shape drawn from
    ``holes.kinds`` (or given: ``kinds`` (N,) indices into :data:`HOLE_KINDS`). Drawn on the CPU; every hole
    leaves at least one pixel known."""
    count, height, width = segments.shape
    weights = torch.tensor([holes.kinds.get(kind, 0.0) for kind in HOLE_KINDS], dtype=torch.float64)
    if kinds is None:
        kinds = torch.multinomial(weights, count, replacement=True, generator=generator)
    low, high = holes.share
    share = low + (high - low) * torch.rand(count, generator=generator)
    result = torch.zeros(count, height, width, dtype=torch.bool)
    segments = segments.long()
    # superpixels: each segment removed with probability share (LIME's and the superpixel games' coalitions)
    picked = torch.rand(count, int(segments.max()) + 1, generator=generator) < share[:, None]
    by_segments = picked.gather(1, segments.flatten(1)).view(count, height, width)
    # patches: one square window (the sliding patch), or a random subset of a g x g grid (MoXI, grid games)
    side = (holes.patch[0] + (holes.patch[1] - holes.patch[0]) * torch.rand(count, generator=generator)) * min(
        height, width
    )
    top = (torch.rand(count, generator=generator) * (height - side + 1)).floor()
    left = (torch.rand(count, generator=generator) * (width - side + 1)).floor()
    rows, columns = torch.arange(height).view(1, -1, 1), torch.arange(width).view(1, 1, -1)
    window = ((rows >= top.view(-1, 1, 1)) & (rows < (top + side).view(-1, 1, 1))
              & (columns >= left.view(-1, 1, 1)) & (columns < (left + side).view(-1, 1, 1)))  # fmt: skip
    grids = torch.randint(3, 9, (count,), generator=generator)
    cells = torch.rand(count, 8, 8, generator=generator) < share[:, None, None]
    cell_rows = (rows * grids.view(-1, 1, 1) // height).clamp(max=7)
    cell_columns = (columns * grids.view(-1, 1, 1) // width).clamp(max=7)
    by_cells = cells[torch.arange(count).view(-1, 1, 1), cell_rows, cell_columns]
    use_window = torch.rand(count, generator=generator) < 0.5
    by_patches = torch.where(use_window.view(-1, 1, 1), window, by_cells)
    # blobs: smooth noise upsampled from a coarse grid, thresholded at the share (meaningful perturbation's masks)
    coarse = torch.randn(count, 1, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).squeeze(1)
    threshold = torch.quantile(smooth.flatten(1), share, dim=1).diagonal()
    by_blobs = smooth <= threshold.view(-1, 1, 1)
    result = torch.stack([by_segments, by_patches, by_blobs])[kinds, torch.arange(count)]
    full = result.flatten(1).all(1)
    result[full, height // 2, width // 2] = False  # something to inpaint from
    return result


class CropSet(Dataset):
    """Crops (uint8) with their SLIC maps; val and test crops also carry fixed holes and their kinds."""

    def __init__(self, crops: np.ndarray, segments: np.ndarray, holes: Tensor | None = None,
                 kinds: Tensor | None = None) -> None:  # fmt: skip
        self.crops, self.segments, self.holes, self.kinds = crops, segments, holes, kinds

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"image": torch.from_numpy(np.array(self.crops[index])).permute(2, 0, 1),
                                  "segments": torch.from_numpy(self.segments[index].astype(np.int64)),
                                  "index": index}  # fmt: skip
        if self.holes is not None and self.kinds is not None:
            sample["hole"], sample["kind"] = self.holes[index], self.kinds[index]
        return sample


def fixed_holes(segments: np.ndarray, holes: HoleSettings, seed: int, stage: str) -> tuple[Tensor, Tensor]:
    """Holes of every kind in turn (crop i gets kind i mod 3), the same in every epoch and run with this seed."""
    generator = torch.Generator().manual_seed(seed * 7919 + STAGES.index(stage))
    kinds = torch.arange(len(segments)) % len(HOLE_KINDS)
    return draw_holes(torch.from_numpy(segments.astype(np.int64)), holes, generator, kinds), kinds


class CropDataModule(L.LightningDataModule):
    """Train / val / test crops, cut and segmented once (on every process, deterministically)."""

    def __init__(self, config: InpainterExperiment) -> None:
        super().__init__()
        self.config = config
        self.sets: dict[str, CropSet] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.sets:
            return
        data, holes = self.config.data, self.config.holes
        for name in STAGES:
            crops = make_crops(data, name)
            segments = superpixel_maps(crops, holes, data.data_seed + STAGES.index(name))
            fixed = fixed_holes(segments, holes, data.data_seed, name) if name != "train" else (None, None)
            self.sets[name] = CropSet(crops, segments, *fixed)

    def _loader(self, stage: str) -> DataLoader:
        world = self.trainer.world_size if self.trainer is not None else 1
        rank = self.trainer.global_rank if self.trainer is not None else 0
        train = stage == "train"
        sampler: DistributedSampler[int] = DistributedSampler(self.sets[stage], num_replicas=world, rank=rank,
                                                              shuffle=train, seed=self.config.train.seed,
                                                              drop_last=train)  # fmt: skip
        return DataLoader(self.sets[stage], batch_size=self.config.train.batch_size, sampler=sampler, drop_last=train)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")


# ---------------------------------------------------------------------------------------------------------------------
# Training.


def hole_l1(filled: Tensor, images: Tensor, holes: Tensor) -> Tensor:
    """Per image mean absolute error (N,) over the hole's pixels and channels."""
    error = (filled - images).abs().mean(1) * holes
    return error.flatten(1).sum(1) / holes.flatten(1).sum(1).clamp_min(1)


class InpainterLightning(L.LightningModule):
    """The network and its loss: each image's mean L1 error inside the hole (the held-out score); holes are drawn
    per batch from a generator seeded by (seed, epoch, rank, batch), so a resumed run draws what an uninterrupted
    one would."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.experiment = InpainterExperiment.model_validate(config)
        settings = self.experiment.model
        self.network = GatedInpainter(
            settings.channels, settings.scale, tuple(settings.dilations), settings.iterations, settings.fine_iterations
        )
        self.val_errors: list[Tensor] = []

    def loss(self, images: Tensor, holes: Tensor) -> tuple[Tensor, Tensor]:
        """The training loss and the per image L1 inside the hole of the composited fill."""
        composite = torch.where(holes.unsqueeze(1), self.network(images, holes), images)
        errors = hole_l1(composite, images, holes)
        return errors.mean(), errors.detach()

    def training_step(self, batch: dict[str, Any], batch_index: int) -> Tensor:
        generator = torch.Generator().manual_seed(
            (self.experiment.train.seed * 1_000_003 + self.current_epoch * 10_007 + self.global_rank * 101
             + batch_index) % 2**63)  # fmt: skip
        holes = draw_holes(batch["segments"].cpu(), self.experiment.holes, generator).to(self.device)
        images = batch["image"].float() / 255
        loss, errors = self.loss(images, holes)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        self.log("train/l1_hole", errors.mean(), batch_size=len(images))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_index: int) -> None:
        _, errors = self.loss(batch["image"].float() / 255, batch["hole"])
        self.log("val/l1_hole", errors.mean(), batch_size=len(errors), sync_dist=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        train = self.experiment.train
        optimizer = torch.optim.Adam(self.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(
            step, total) / total)) * 0.95 + 0.05)  # fmt: skip
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def mean_colour_fill(images: Tensor, holes: Tensor) -> Tensor:
    """Each image's hole filled with the mean colour of its known pixels (the simplest fill, for reference)."""
    known = (~holes).unsqueeze(1).float()
    mean = (images * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    return torch.where(holes.unsqueeze(1), mean.expand_as(images), images)


def held_out_errors(network: GatedInpainter, crops: CropSet, batch_size: int = 64) -> dict[str, dict[str, float]]:
    """L1 inside the hole (mean over held-out crops, overall and per hole kind) of the network, Telea and the mean
    colour, on the crops' fixed holes."""
    if crops.holes is None or crops.kinds is None:
        raise ValueError("held-out crops need fixed holes")
    telea = TeleaInpaint()
    errors: dict[str, list[Tensor]] = {"learned": [], "telea": [], "mean_colour": []}
    network = network.eval()
    device = next(network.parameters()).device
    for start in range(0, len(crops), batch_size):
        index = range(start, min(start + batch_size, len(crops)))
        images = torch.stack([crops[i]["image"] for i in index]).float().div(255).to(device)
        holes = crops.holes[start : start + len(index)].to(device)
        with torch.no_grad():
            learned = torch.where(holes.unsqueeze(1), network(images, holes), images)
        fills = {"learned": learned, "telea": telea(images, ~holes), "mean_colour": mean_colour_fill(images, holes)}
        for name, filled in fills.items():
            errors[name].append(hole_l1(filled, images, holes).cpu())
    kinds = crops.kinds
    report: dict[str, dict[str, float]] = {}
    for name, parts in errors.items():
        values = torch.cat(parts)
        report[name] = {"all": float(values.mean())}
        for number, kind in enumerate(HOLE_KINDS):
            chosen = values[kinds == number]
            if len(chosen):
                report[name][kind] = float(chosen.mean())
    return report


def _check_resume(out: Path, config: InpainterExperiment) -> Path:
    saved, last = out / EXPERIMENT_FILE, out / "checkpoints" / "last.ckpt"
    if not saved.is_file() or not last.is_file():
        raise ConfigError(f"nothing to resume in '{out}': expected {saved} and {last} from an earlier run")
    previous = yaml.safe_load(saved.read_text())
    current = config.to_dict()

    def strip(experiment: Any) -> Any:  # what may differ between the parts of one run: budget and hardware
        if not isinstance(experiment, dict) or not isinstance(experiment.get("train"), dict):
            return experiment
        train = {k: v for k, v in experiment["train"].items() if k not in ("epochs", "loggers", "threads")}
        trainer = {k: v for k, v in (train.get("trainer") or {}).items()
                   if k not in ("accelerator", "devices", "num_nodes", "strategy")}  # fmt: skip
        return {**experiment, "train": {**train, "trainer": trainer}}

    if strip(previous) != strip(current):
        raise ConfigError(f"'{out}' holds a run with other settings: resume with the same config or use a new --out")
    return last


def train_inpainter(
    config: InpainterExperiment, out: str | os.PathLike[str], resume: bool = False, progress: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Train as configured into ``out`` (logs, epoch checkpoints, ``experiment.yaml``); write ``out/model`` and
    ``out/metrics.json`` (validation, and the held-out L1 errors of the network, Telea and the mean colour).
    Returns the model folder and the metrics."""
    out = Path(out)
    train = config.train
    if train.threads:
        torch.set_num_threads(train.threads)
    checkpoint = _check_resume(out, config) if resume else None
    if not resume and (out / "checkpoints").exists():
        raise ConfigError(f"'{out}' already holds a run: pass --resume to continue it, or choose another --out")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    version = f"logs-resumed-{len(list(out.glob('logs-resumed-*'))) + 1}" if resume else "logs"
    loggers: list[Any] = []
    for name in train.loggers:
        if name == "csv":
            loggers.append(CSVLogger(out, name="", version=version))
        else:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(out, name="", version=f"tensorboard-{version}"))
    checkpoints = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor="val/l1_hole", mode="min",
                                  save_last=True, every_n_epochs=1)  # fmt: skip
    try:
        trainer = L.Trainer(**train.trainer.model_dump(), max_epochs=train.epochs, logger=loggers,
                            callbacks=[checkpoints], enable_progress_bar=progress, default_root_dir=out,
                            use_distributed_sampler=False, enable_model_summary=False)  # fmt: skip
    except (MisconfigurationException, ValueError) as exc:
        raise ConfigError(f"train.trainer: {' '.join(str(exc).split())}") from exc
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(train.seed, workers=True, verbose=False)
    data = CropDataModule(config)
    module = InpainterLightning(config.to_dict())
    if not resume:
        with atomic_path(out / EXPERIMENT_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(module, datamodule=data, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {}
    if trainer.global_rank == 0:
        data.setup()
        network = module.network.cpu().eval()
        test = held_out_errors(network, data.sets["test"])
        metrics = {"epochs": trainer.current_epoch, "fit_seconds": round(seconds, 1),
                   "validation": {key: float(value) for key, value in trainer.callback_metrics.items()},
                   "test": {"images": len(data.sets["test"]), "l1_hole": test,
                            "source": config.data.source}}  # fmt: skip
        write_json(out / "metrics.json", metrics)
        save_inpainter(network, out / "model", extra={"experiment": config.to_dict(), "test_l1_hole": test})
    return out / "model", metrics
