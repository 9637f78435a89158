"""Experiment configuration: data, model and training settings in one YAML file, with command-line overrides.

A config file has three sections, ``data`` (:class:`DataConfig`), ``model`` (:class:`P2PConfig` fields except
the class count, names and image size, which come from the data) and ``train`` (:class:`TrainConfig`, with
``trainer``: arguments passed to Lightning's ``Trainer``), plus a ``name``. Overrides use dotted keys:
``train.epochs=3 model.fixed_tau=0.4 data.root=/data/cifar train.trainer.devices=4``; values are parsed as YAML
(numbers, booleans, lists). Every value is checked before any data or model work, and a wrong one is reported in
one line (see :mod:`p2pvision.config`).
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from p2pvision.config import (
    SHIPPED,
    Float,
    Fraction,
    Int,
    Name,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Section,
    check_arguments,
    error_at,
    is_partial,
    nested,
    read_config,
    shipped_names,
    validate,
)
from p2pvision.config import (
    apply_overrides as _apply_overrides,
)
from p2pvision.errors import ConfigError
from p2pvision.models.p2p.config import MODEL_SECTION, P2PConfig

# Training modes: P2P, the classifier alone on full images (the Blackbox), and the trained baselines of
# p2pvision.baselines (train/baselines.py BASELINE_MODES; a test keeps the two lists equal).
TRAIN_MODES = ("p2p", "classifier", "blackbox_pixel", "realx", "soft_mask")
DATA_SOURCES = ("semisynthetic", "imagefolder", "cifar10", "imagenet", "imagenet9", "coco10", "bam")
# Lightning's precision values (lightning.fabric's _PRECISION_INPUT; a test keeps them equal). Numbers are read as
# their string forms (16 -> "16").
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16")  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Keys of ``train`` before the Trainer arguments moved to ``train.trainer``: still read, with a FutureWarning.
MOVED_TO_TRAINER = ("accelerator", "devices", "num_nodes", "strategy", "precision", "limit_train_batches",
                    "limit_val_batches", "log_every_n_steps")  # fmt: skip


class DataConfig(Section):
    """Where images come from and how they are prepared.

    ``source`` is "semisynthetic" (the built-in set; ``task`` object or scene) or a local format
    (imagefolder, cifar10, imagenet, imagenet9, coco10, bam; BAM's ``task`` is obj or scene) read from ``root``.
    Local images are resized and centre-cropped to ``image_size`` once; region maps are then computed once per image
    and cached (``region_cache``), or recomputed on every augmented view when the set is too large to cache
    (ImageNet). Formats without a validation split hold out ``val_fraction`` of the training split (never the test
    set).
    """

    source: Literal[DATA_SOURCES] = "semisynthetic"  # type: ignore[valid-type]
    task: Literal["object", "scene", "obj"] = "object"
    root: Name | None = None
    masks: Name | None = None
    train_split: Name | None = None
    val_split: Name | None = None
    test_split: Name | None = None
    val_fraction: OpenFraction = 0.1
    image_size: Annotated[Int, Field(ge=8, le=4096)] = 64  # the side images are resized to
    n_train: PositiveInt = 8000
    n_val: PositiveInt = 1000
    n_test: PositiveInt = 1000
    objects: Literal["mnist", "fashion"] = "mnist"
    data_seed: NonNegativeInt = 0
    crop_scale: tuple[Fraction, Fraction] = (0.7, 1.0)  # area share range of the random resized crop
    flip: bool = True
    color_jitter: Annotated[Float, Field(ge=0, le=1)] = 0.0
    region_cache: bool = True
    num_workers: NonNegativeInt = 0

    @model_validator(mode="after")
    def _related(self) -> DataConfig:
        tasks = {"semisynthetic": ("object", "scene"), "bam": ("obj", "scene")}.get(self.source)
        if tasks and self.task not in tasks:
            raise error_at("task", self.task, f"allowed for source {self.source}: {', '.join(tasks)}")
        low, high = self.crop_scale
        if low > high:
            raise error_at("crop_scale", [low, high], "the low end must be <= the high end")
        return self


def _precision(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TrainerArgs(Section, extra="allow"):
    """Arguments of ``lightning.pytorch.Trainer``, passed through: the usual ones are typed here with their
    ranges; any other argument of the Trainer's signature is accepted and checked against its annotation.
    ``reserved`` maps the arguments p2pvision sets itself to what to use instead."""

    reserved: ClassVar[dict[str, str]] = {}

    accelerator: Literal[ACCELERATORS] = "auto"  # type: ignore[valid-type]
    devices: PositiveInt | Literal["auto"] | Annotated[list[NonNegativeInt], Field(min_length=1)] = 1
    num_nodes: PositiveInt = 1
    strategy: Name = "auto"
    precision: Annotated[Literal[PRECISIONS], BeforeValidator(_precision)] = "32-true"  # type: ignore[valid-type]

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, value: str) -> str:
        from lightning.pytorch.strategies import StrategyRegistry

        names = ["auto", *StrategyRegistry.available_strategies()]
        if value not in names:
            raise error_at((), value, f"allowed: {', '.join(names)}")
        return value

    @model_validator(mode="after")
    def _pass_through(self) -> TrainerArgs:
        extra = dict(self.__pydantic_extra__ or {})
        for key, hint in self.reserved.items():
            if key in extra:
                raise error_at(key, extra[key], f"set by p2pvision: {hint}")
        if extra:
            from lightning.pytorch import Trainer

            check_arguments(Trainer, extra, skip=tuple(self.reserved))
        return self

    @classmethod
    def known_keys(cls) -> list[str]:
        from lightning.pytorch import Trainer

        return [key for key in inspect.signature(Trainer).parameters if key not in cls.reserved]


class TrainingTrainerArgs(TrainerArgs):
    """``train.trainer``: Trainer arguments of a training run (what p2pvision sets itself is refused)."""

    reserved: ClassVar[dict[str, str]] = {
        "max_epochs": "use train.epochs",
        "logger": "use train.loggers",
        "callbacks": "pass callbacks to run_training",
        "enable_checkpointing": "a checkpoint is written every epoch",
        "enable_progress_bar": "progress bars follow the command (benchmark --quiet hides them)",
        "enable_model_summary": "p2pvision turns it off",
        "default_root_dir": "use --out",
        "use_distributed_sampler": "p2pvision shards the data itself (seeded, resumable)",
    }

    # An integer is a number of batches, a number in (0, 1] a share of them.
    limit_train_batches: PositiveInt | Fraction = 1.0
    limit_val_batches: PositiveInt | Fraction = 1.0
    log_every_n_steps: PositiveInt = 20


class TrainConfig(Section):
    """Optimisation and hardware. ``mode`` "p2p" trains P2P; "classifier" trains the classifier alone on full
    images (the Blackbox baseline) with the same data, augmentation and budget; "blackbox_pixel", "realx" and
    "soft_mask" train the baselines of :mod:`p2pvision.baselines` (see ``train/baselines.py``). ``trainer`` holds
    arguments for Lightning's Trainer (accelerator, devices, num_nodes, strategy, precision, ...)."""

    mode: Literal[TRAIN_MODES] = "p2p"  # type: ignore[valid-type]
    epochs: PositiveInt = 10
    warmup_epochs: NonNegativeInt = 0  # first epochs: the classifier alone on full images (part of ``epochs``)
    warmup_lr: PositiveFloat | None = None  # learning rate of the warm-up epochs (None: lr)
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-4
    weight_decay: NonNegativeFloat = 0.0
    seed: Annotated[Int, Field(ge=0, le=2**32 - 1)] = 0
    val_tau_grid: Annotated[tuple[Fraction, ...], Field(min_length=1)] = (0.1, 0.2, 0.4, 0.7, 1.0)
    loggers: tuple[Literal["csv", "tensorboard", "wandb"], ...] = ("csv",)
    threads: PositiveInt | None = None  # torch threads per process (None: torch's choice; shared under CPU DDP)
    trainer: TrainingTrainerArgs = Field(default_factory=TrainingTrainerArgs)

    @model_validator(mode="after")
    def _related(self, info: ValidationInfo) -> TrainConfig:
        if self.warmup_epochs > self.epochs and not is_partial(info):  # equal: a run that is all warm-up
            raise error_at("warmup_epochs", self.warmup_epochs, f"must be <= epochs ({self.epochs})")
        return self


class ExperimentConfig(Section):
    """A training experiment: ``data``, ``model`` (the given P2P settings, checked), ``train``."""

    name: Name = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: nested(MODEL_SECTION) = Field(default_factory=dict)  # type: ignore[valid-type]
    train: TrainConfig = Field(default_factory=TrainConfig)

    def p2p_config(self, num_classes: int, class_names: list[str] | None = None) -> P2PConfig:
        """The P2P settings of this experiment for data with these classes, at the data's image size."""
        return P2PConfig(**self.model, num_classes=num_classes, class_names=class_names,
                         image_size=self.data.image_size)  # fmt: skip

    @property
    def partition(self) -> dict[str, Any]:
        """The region partition of the model (its default when the config sets none)."""
        return dict(self.model.get("partition") or MODEL_SECTION.model_fields["partition"].get_default(
            call_default_factory=True))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Every setting (the model section: the keys given), as plain JSON-able values in a fixed order."""
        return {
            "name": self.name,
            "data": self.data.model_dump(mode="json"),
            "model": json.loads(json.dumps(self.model)),
            "train": self.train.model_dump(mode="json"),
        }


def migrate(data: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """``data`` with the Trainer arguments of the old ``train`` layout moved into ``train.trainer``, each with a
    FutureWarning (runs saved before the move keep loading)."""
    train = data.get("train")
    if not isinstance(train, dict) or not set(train) & set(MOVED_TO_TRAINER):
        return data
    train = dict(train)
    trainer = train.get("trainer")
    trainer = dict(trainer) if isinstance(trainer, dict) else {} if trainer is None else trainer
    for key in MOVED_TO_TRAINER:
        if key not in train:
            continue
        value = train.pop(key)
        if isinstance(trainer, dict):
            if key in trainer and trainer[key] != value:
                raise ConfigError(f"train.{key} and train.trainer.{key} are both given: keep train.trainer.{key}")
            trainer[key] = value
        warnings.warn(f"train.{key} is now train.trainer.{key}: read as that; rename it in {source} or your "
                      "overrides", FutureWarning, stacklevel=3)  # fmt: skip
    train["trainer"] = trainer
    return {**data, "train": train}


def experiment_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Check an experiment mapping (see the module docstring); a one-line ConfigError names what is wrong."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment must be a mapping with name, data, model and train")
    model = data.get("model")
    if isinstance(model, dict):
        for key, origin in (("num_classes", "the data set"), ("class_names", "the data set"),
                            ("image_size", "data.image_size")):  # fmt: skip
            if key in model:
                raise ConfigError(f"model.{key} comes from {origin}; remove it from the config")
    data = {key: ({} if value is None and key in ("data", "model", "train") else value) for key, value in data.items()}
    return validate(ExperimentConfig, migrate(data, source))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a config dict (returns a copy)."""
    return _apply_overrides(data, overrides, example="train.epochs=3")


SHIPPED_CONFIGS = SHIPPED


def shipped_configs() -> list[str]:
    """Names of the experiment configs that ship with p2pvision (usable as ``--config NAME``)."""
    return shipped_names(SHIPPED_CONFIGS)


def load_experiment(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file or a shipped config by name (defaults if None) and apply overrides."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        resolved, data = read_config(path, SHIPPED_CONFIGS, "config file")
        source = str(resolved)
    return experiment_from_dict(apply_overrides(data, overrides or []), source)
