"""Experiment configuration: data, model and training settings in one YAML file, with command-line overrides.

A config file has three sections, ``data`` (:class:`DataConfig`), ``model`` (:class:`P2PConfig` fields except
the class count and names, which come from the data) and ``train`` (:class:`TrainConfig`), plus a ``name``.
Overrides use dotted keys: ``train.epochs=3 model.fixed_tau=0.4 data.root=/data/cifar``; values are parsed
as YAML (numbers, booleans, lists).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from p2pvision.errors import ConfigError
from p2pvision.models.p2p.config import P2PConfig


@dataclass
class DataConfig:
    """Where images come from and how they are prepared.

    ``source`` is "semisynthetic" (the built-in set; ``task`` object or scene) or a local format
    (imagefolder, cifar10, imagenet, imagenet9, coco10, bam) read from ``root``. Local images are resized and
    centre-cropped to ``image_size`` once; region maps are then computed once per image and cached
    (``region_cache``), or recomputed on every augmented view when the set is too large to cache (ImageNet).
    Formats without a validation split hold out ``val_fraction`` of the training split (never the test set).
    """

    source: str = "semisynthetic"
    task: str = "object"
    root: str | None = None
    masks: str | None = None
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    val_fraction: float = 0.1
    image_size: int = 64
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    objects: str = "mnist"
    data_seed: int = 0
    crop_scale: tuple[float, float] = (0.7, 1.0)
    flip: bool = True
    color_jitter: float = 0.0
    region_cache: bool = True
    num_workers: int = 0


@dataclass
class TrainConfig:
    """Optimisation and hardware. ``mode`` "p2p" trains P2P; "classifier" trains the classifier alone on full
    images (the Blackbox baseline) with the same data, augmentation and budget; "blackbox_pixel", "realx" and
    "soft_mask" train the baselines of :mod:`p2pvision.baselines` (see ``train/baselines.py``)."""

    mode: str = "p2p"
    epochs: int = 10
    warmup_epochs: int = 0  # P2P only: first epochs train the classifier alone on full images (in ``epochs``)
    warmup_lr: float | None = None  # learning rate of the warm-up epochs (None: lr)
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    val_tau_grid: tuple[float, ...] = (0.1, 0.2, 0.4, 0.7, 1.0)
    loggers: tuple[str, ...] = ("csv",)
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    log_every_n_steps: int = 20
    threads: int | None = None


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def model_config(self, num_classes: int, class_names: list[str]) -> P2PConfig:
        """The P2P settings with the class count and names of the data."""
        return P2PConfig.from_dict({**self.model, "num_classes": num_classes, "class_names": class_names})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "model": dict(self.model),
            "train": dataclasses.asdict(self.train),
        }


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown {section} setting(s) {', '.join(unknown)}: known are {', '.join(sorted(known))}")
    converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    return cls(**converted)


def experiment_from_dict(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    unknown = sorted(set(data) - {"name", "data", "model", "train"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}: use name, data, model, train")
    model = dict(data.get("model") or {})
    for reserved in ("num_classes", "class_names"):
        if reserved in model:
            raise ConfigError(f"{source}: model.{reserved} comes from the data set; remove it from the config")
    P2PConfig.from_dict({**model, "num_classes": 2})  # validate names and values early
    return ExperimentConfig(
        name=str(data.get("name", "experiment")),
        data=_build(DataConfig, dict(data.get("data") or {}), "data"),
        model=model,
        train=_build(TrainConfig, dict(data.get("train") or {}), "train"),
    )


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a config dict."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form section.key=value (e.g. train.epochs=3)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override '{item}': cannot parse the value ({exc.__class__.__name__})") from exc
        parts = key.split(".")
        if parts[0] == "name" and len(parts) == 1:
            data["name"] = value
            continue
        if len(parts) < 2 or parts[0] not in ("data", "model", "train"):
            raise ConfigError(f"override '{item}': the key must start with data., model. or train.")
        target = data.setdefault(parts[0], {})
        for part in parts[1:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return data


SHIPPED_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def shipped_configs() -> list[str]:
    """Names of the experiment configs that ship with p2pvision (usable as ``--config NAME``)."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def load_experiment(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML experiment file or a shipped config by name (defaults if None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file() and path.suffix == "" and (SHIPPED_CONFIGS / f"{path}.yaml").is_file():
            path = SHIPPED_CONFIGS / f"{path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"config file '{path}' does not exist: "
                f"give a YAML file or a shipped name ({', '.join(shipped_configs())})"
            )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file '{path}' is not valid YAML: {' '.join(str(exc).split())}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping with data/model/train sections")
    return experiment_from_dict(apply_overrides(data, overrides or []), str(path or "config"))
