"""What p2pvision needs of an image classifier, in one place: the :class:`Classifier` protocol, the network whose
layers explainers read (:func:`network_of`), its input normalisation (:func:`normalised`) and one context manager
that records layer activations during forward passes (:func:`capture`), shared by Grad-CAM, attention rollout and
INV. Any ``nn.Module`` mapping images in [0, 1] to logits works; a :class:`Classifier` (such as
:class:`~p2pvision.models.backbones.ImageClassifier`) also tells its normalisation and wrapped network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

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
