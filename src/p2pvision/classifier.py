"""What p2pvision needs of an image classifier, in one place: the :class:`Classifier` protocol, the network whose
layers explainers read (:func:`network_of`), its input normalisation (:func:`normalised`) and one context manager
that records layer activations during forward passes (:func:`capture`), shared by Grad-CAM, attention rollout and
INV. A :class:`Classifier` (such as :class:`~p2pvision.models.backbones.ImageClassifier`) takes images in [0, 1]
and tells its normalisation and wrapped network.

Any other PyTorch classifier (torchvision, timm, Hugging Face) becomes one with :func:`as_classifier` (the
explainers call it on the model they are given): a :class:`WrappedClassifier` normalises images in [0, 1] with the
mean/std given, or those the model states (timm's ``pretrained_cfg``, a Hugging Face config's
``image_mean``/``image_std``), passes extra forward arguments on (:func:`forward_args_for`, Captum's
``additional_forward_args``) and reads logits from what the network returns (:func:`logits_of`: a tensor, an
output's ``.logits``, or a tuple's first element).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from p2pvision.errors import ConfigError


@runtime_checkable
class Classifier(Protocol):
    """An image classifier that normalises its inputs itself: ``model(images)`` takes (B,3,H,W) in [0,1]."""

    model: nn.Module  # the wrapped network (e.g. a timm model), whose submodules are the layers
    mean: Tensor  # (3,) normalisation mean: the colour that is zero after normalisation
    class_names: list[str]

    def __call__(self, images: Tensor) -> Tensor: ...

    def normalize(self, images: Tensor) -> Tensor: ...


def network_of(model: nn.Module) -> nn.Module:
    """The module whose submodules are the layers: a :class:`Classifier`'s wrapped network, else ``model``."""
    return model.model if isinstance(model, Classifier) else model


def normalised(model: nn.Module, images: Tensor) -> Tensor:
    """``images`` as ``network_of(model)`` takes them: normalised by a :class:`Classifier`, else as they are."""
    return model.normalize(images) if isinstance(model, Classifier) else images


def normalisation_mean(model: nn.Module) -> Tensor | None:
    """(3,) the colour that is zero after ``model``'s normalisation, where it is known (a :class:`Classifier` with
    a 3-value ``mean``); None for a network whose normalisation p2pvision does not know."""
    mean = getattr(model, "mean", None) if isinstance(model, Classifier) else None
    return mean.detach().flatten() if isinstance(mean, Tensor) and mean.numel() == 3 else None


def logits_of(output: Any) -> Tensor:
    """The logits (B, classes) in what a network's forward returns: a tensor, an output object's ``.logits`` (a
    Hugging Face ``ImageClassifierOutput``, any dataclass) or the first element of a tuple."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ConfigError(f"the model returned a {type(output).__name__}: p2pvision needs logits (B, classes), a tensor "
                      "or an output with .logits")  # fmt: skip


def normalisation_of(model: nn.Module) -> tuple[list[float], list[float]] | None:
    """(mean, std) that ``model``'s weights expect, where the model states them: timm's ``pretrained_cfg``, or a
    Hugging Face config's ``image_mean``/``image_std``; None otherwise (torchvision models do not say)."""
    timm_config = getattr(model, "pretrained_cfg", None)
    if isinstance(timm_config, dict) and timm_config.get("mean") is not None and timm_config.get("std") is not None:
        return list(timm_config["mean"]), list(timm_config["std"])
    config = getattr(model, "config", None)
    mean, std = getattr(config, "image_mean", None), getattr(config, "image_std", None)
    if mean is not None and std is not None:
        return list(mean), list(std)
    return None


def _channels(name: str, values: float | Sequence[float] | Tensor, positive: bool = False) -> Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    tensor = tensor.expand(3).clone() if tensor.numel() == 1 else tensor
    if tensor.numel() != 3 or not torch.isfinite(tensor).all() or (positive and not (tensor > 0).all()):
        rule = "positive numbers" if positive else "numbers"
        raise ConfigError(f"{name} must be one or three {rule} (one per RGB channel), got {values!r}")
    return tensor.view(1, 3, 1, 1)


class WrappedClassifier(nn.Module):
    """A :class:`Classifier` around any PyTorch image classifier ``model`` (see the module docstring).

    ``mean``/``std``: the normalisation its weights expect (one or three values each; None: the network takes images
    in [0, 1] as they are, and its ``mean`` is None: p2pvision does not know which colour is neutral for it).
    ``model(images, *args)`` normalises images in [0, 1], calls the network with ``args`` and returns logits.
    """

    mean: Tensor | None  # buffers (1, 3, 1, 1), None where the normalisation is unknown
    std: Tensor | None

    def __init__(
        self,
        model: nn.Module,
        mean: float | Sequence[float] | Tensor | None = None,
        std: float | Sequence[float] | Tensor | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ConfigError("give both mean and std of the model's input normalisation, or neither")
        self.model = model
        self.training = model.training  # the wrapper's mode is its network's (set without touching the network)
        self.register_buffer("mean", None if mean is None else _channels("mean", mean), persistent=False)
        self.register_buffer("std", None if std is None else _channels("std", std, positive=True), persistent=False)
        labels = getattr(getattr(model, "config", None), "id2label", None)
        if class_names is None and isinstance(labels, dict) and labels:
            class_names = [str(labels[key]) for key in sorted(labels)]
        self.class_names = list(class_names or [])

    def normalize(self, images: Tensor) -> Tensor:
        if self.mean is None or self.std is None:
            return images
        return (images - self.mean) / self.std

    def forward(self, images: Tensor, *args: Any) -> Tensor:
        """Logits (B, classes) for images (B,3,H,W) in [0,1]; ``args`` go to the network's forward."""
        return logits_of(self.model(self.normalize(images), *args))

    def extra_repr(self) -> str:
        if self.mean is None or self.std is None:
            return "normalisation unknown: images in [0, 1] as they are"
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def as_classifier(
    model: nn.Module,
    mean: float | Sequence[float] | Tensor | None = None,
    std: float | Sequence[float] | Tensor | None = None,
    class_names: Sequence[str] | None = None,
) -> nn.Module:
    """``model`` as the explainers call it: a :class:`Classifier` as it is; any other network wrapped in a
    :class:`WrappedClassifier` with ``mean``/``std`` (given, else read with :func:`normalisation_of`, else none)."""
    if isinstance(model, Classifier):
        if mean is not None or std is not None:
            raise ConfigError(f"{type(model).__name__} normalises its inputs itself: give mean/std only with a plain "
                              "network")  # fmt: skip
        return model
    if not isinstance(model, nn.Module):
        raise ConfigError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    if mean is None and std is None:
        mean, std = normalisation_of(model) or (None, None)
    return WrappedClassifier(model, mean, std, class_names)


def forward_args(args: Any) -> tuple[Any, ...]:
    """Extra forward arguments as a tuple (Captum's convention: None is none, a tuple is several, else one)."""
    if args is None:
        return ()
    return args if isinstance(args, tuple) else (args,)


def forward_args_for(args: tuple[Any, ...], index: Tensor, count: int) -> tuple[Any, ...]:
    """The extra forward arguments of the evaluated images ``index`` (n,) out of ``count`` explained images: a tensor
    whose first dimension is ``count`` holds one entry per image and is indexed (so it is expanded to the evaluated
    batch); anything else (numbers, flags, tensors of another length) is passed as it is, to every evaluation."""
    return tuple(
        arg[index.to(arg.device)] if isinstance(arg, Tensor) and arg.ndim > 0 and arg.shape[0] == count else arg
        for arg in args
    )


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore every submodule's training flag afterwards (a wrapper's own flag
    need not be its network's, and a network may keep some layers in eval mode on purpose)."""
    flags = [(module, module.training) for module in model.modules()]
    if any(training for _, training in flags):  # nn.Module.eval() sets every flag, slowly (~270 for EfficientNet)
        model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            if module.training != training:
                module.training = training


@contextlib.contextmanager
def capture(network: nn.Module, layers: Sequence[str], inputs: bool = False) -> Iterator[dict[str, list[Tensor]]]:
    """Record what each named submodule of ``network`` outputs (its first input with ``inputs=True``) on every
    forward pass inside the context: ``{layer: [tensor per pass]}``. Gradients flow through the recorded tensors;
    hooks are removed on exit."""
    records: dict[str, list[Tensor]] = {name: [] for name in layers}
    handles = []
    try:
        for name in layers:
            try:
                module = network.get_submodule(name)
            except AttributeError as error:
                raise ConfigError(f"model has no layer {name!r}: {error}") from None
            found = records[name]
            if inputs:
                handles.append(module.register_forward_hook(lambda _m, args, _o, found=found: found.append(args[0])))
            else:
                handles.append(module.register_forward_hook(lambda _m, _i, output, found=found: found.append(output)))
        yield records
    finally:
        for handle in handles:
            handle.remove()
