"""Common ground of the post-hoc explainers: the registry, the base classes and the helpers they share.

Every explainer is an object with ``explain(images, target=None, regions=None) ->``
:class:`~p2pvision.explanation.Explanation`. Images are float (B,3,H,W) in [0,1]; ``regions`` (B,H,W) int64 are
the players (computed with the explainer's partitioner when not given); ``target`` is a class index, a (B,)
tensor, or None for the model's own top-1 class. A method is one class registered with ``@EXPLAINERS.register``
that overrides :meth:`Explainer._attribute`; its constructor's keyword parameters are its settings (stored as
attributes of the same names, reported in ``params``).

The model is any PyTorch image classifier: a :class:`~p2pvision.classifier.Classifier` (such as p2pvision's
``ImageClassifier``) as it is, any other network through :func:`~p2pvision.classifier.as_classifier` (its
normalisation given to :func:`make_explainer` as ``mean``/``std`` or read from the model; logits read from a
Hugging Face output). ``explain`` also takes Captum's ``additional_forward_args`` (passed to the model's forward in
every evaluation, per image where they hold one entry per image) and, for the perturbation methods, ``baselines``:
the fill of removed pixels for that call (a :class:`~p2pvision.removal.BaselineFill`).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from p2pvision.classifier import as_classifier, eval_mode, forward_args, forward_args_for
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation, check_images, order_from_scores
from p2pvision.game import RegionGame
from p2pvision.regions import (
    GridPartitioner,
    Partitioner,
    partition_batch,
    region_areas,
    region_mean,
    region_to_pixel,
)
from p2pvision.registry import Registry
from p2pvision.removal import BaselineFill, Removal, TokenDropping, make_removal

EXPLAINERS: Registry[type[Explainer]] = Registry("explainer", package="p2pvision.explain")


def make_explainer(name: str, model: nn.Module, mean: Any = None, std: Any = None, **params: Any) -> Explainer:
    """``EXPLAINERS.create(name, model, **params)``: an explainer by name (or alias) for ``model``, any PyTorch
    image classifier. ``mean``/``std``: the input normalisation of a plain network (one or three values each, e.g.
    ``processor.image_mean``); without them, a timm or Hugging Face model's own is read where it states one, else
    the network gets the images in [0, 1] as they are (see :func:`~p2pvision.classifier.as_classifier`)."""
    return EXPLAINERS.create(name, as_classifier(model, mean, std), **params)


def explainer_names() -> list[str]:
    """The registered explainers' names (``EXPLAINERS.names()``)."""
    return EXPLAINERS.names()


@dataclass
class Attribution:
    """What a method computes; the base class adds maps, timing and bookkeeping to make the result."""

    scores: Tensor
    target: Tensor
    evaluations: int
    predicted: Tensor | None = None  # the model's top-1 classes, where the method saw them
    order: Tensor | None = None
    pixel_map: Tensor | None = None
    forward_seconds: float = 0.0
    removal_seconds: float = 0.0
    extra: dict[str, Tensor] = field(default_factory=dict)


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class Explainer(ABC):
    """Base class: partitions the images, runs the method in eval mode and assembles the result."""

    name: ClassVar[str]

    supports_baselines: ClassVar[bool] = False  # whether explain() takes baselines (a fill of removed pixels)

    def __init__(self, model: nn.Module, partitioner: Partitioner | None = None) -> None:
        self.model = as_classifier(model)
        self.partitioner = partitioner if partitioner is not None else GridPartitioner(14)
        self._forward_args: tuple[Any, ...] = ()

    def explain(
        self,
        images: Tensor,
        target: int | list[int] | Tensor | None = None,
        regions: Tensor | None = None,
        additional_forward_args: Any = None,
        baselines: float | list[float] | Tensor | None = None,
    ) -> Explanation:
        """Explain ``images`` (B,3,H,W) in [0,1] for ``target`` (an int, a list or (B,) tensor of classes, or None:
        the model's top-1 class). ``additional_forward_args``: extra arguments of the model's forward, as in Captum
        (a tensor with B entries is split per image; anything else goes to every evaluation). ``baselines``
        (perturbation methods): what removed pixels are filled with in this call, in image space: a number, an RGB
        colour, an image (3,H,W) or one per image (B,3,H,W); None: the explainer's removal."""
        check_images(images)
        if baselines is not None and not self.supports_baselines:
            raise ConfigError(f"{self.name} removes no pixels: it takes no baselines")
        if isinstance(target, list):
            target = torch.tensor(target, dtype=torch.int64)
        self._forward_args = forward_args(additional_forward_args)
        try:
            with self._baselines(baselines):
                return self._explain(images, target, regions)
        finally:
            self._forward_args = ()

    @contextlib.contextmanager
    def _baselines(self, baselines: Any) -> Iterator[None]:
        """Where the method fills removed pixels with ``baselines`` during one call (see PerturbationExplainer)."""
        yield

    def forward_args_for(self, index: Tensor, count: int) -> tuple[Any, ...]:
        """The current call's additional forward arguments for images ``index`` of the ``count`` explained."""
        return forward_args_for(self._forward_args, index, count)

    def _explain(self, images: Tensor, target: int | Tensor | None, regions: Tensor | None) -> Explanation:
        images = images.detach().to(model_device(self.model))
        started = time.perf_counter()
        if regions is None:
            regions = partition_batch(images, self.partitioner)
        regions = regions.to(images.device)
        with eval_mode(self.model):
            attribution = self._attribute(images, regions, target)
            predicted, extra_evaluations = attribution.predicted, 0
            if predicted is None and target is None:
                predicted = attribution.target
            elif predicted is None:  # the method did not see the full images' prediction: one more pass
                with torch.no_grad():
                    predicted = self.model(images, *self._forward_args).argmax(1)
                extra_evaluations = len(images)
        seconds = time.perf_counter() - started
        players = region_areas(regions, attribution.scores.shape[1]) > 0
        scores = attribution.scores.masked_fill(~players, 0.0)
        pixel_map = attribution.pixel_map if attribution.pixel_map is not None else region_to_pixel(scores, regions)
        evaluations = (attribution.evaluations + extra_evaluations) / max(len(images), 1)
        return Explanation(
            method=self.name,
            predicted=predicted.to(images.device),
            target=attribution.target.to(images.device),
            pixel_map=pixel_map.detach(),
            regions=regions,
            scores=scores.detach(),
            order=attribution.order,
            evaluations=torch.full((len(images),), float(evaluations), device=images.device),
            seconds=seconds,
            forward_seconds=attribution.forward_seconds,
            removal_seconds=attribution.removal_seconds,
            params={"method": self.name, **self.params, "partition": self.partitioner.params},
            extras={key: value.to(images.device) for key, value in attribution.extra.items()},
        )

    @abstractmethod
    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        """Run the method on checked inputs (model already in eval mode)."""

    @property
    def params(self) -> dict[str, Any]:
        """The method's settings (JSON-serialisable), reported with every result: its constructor's keyword
        parameters (but the model and partitioner, reported apart), read from the attributes of the same names."""
        settings = {}
        for name in inspect.signature(type(self)).parameters:
            if name in ("model", "partitioner"):
                continue
            value = getattr(self, name)
            settings[name] = value.params if hasattr(value, "params") else value
        return settings


def present_players(regions: Tensor) -> Tensor:
    """(B,K) bool: which of the K = max label + 1 player slots have pixels in each image."""
    return region_areas(regions, int(regions.max()) + 1) > 0


def pixel_scores(pixel_map: Tensor, regions: Tensor) -> Tensor:
    """Per-player scores (B,K) as the mean of a pixel map (B,H,W) over each region."""
    num = int(regions.max()) + 1
    return region_mean(pixel_map.unsqueeze(1), regions, num).squeeze(-1)


class PerturbationExplainer(Explainer):
    """An explainer that queries the model on images with removed players, through a :class:`RegionGame`."""

    default_value: ClassVar[str] = "log_odds"
    supports_baselines = True

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        value: str | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, partitioner)
        self.removal = make_removal(removal, model=self.model) if isinstance(removal, str) else removal
        self.value = value or self.default_value
        self.batch_size = batch_size

    @contextlib.contextmanager
    def _baselines(self, baselines: Any) -> Iterator[None]:
        """The removal is a :class:`~p2pvision.removal.BaselineFill` of ``baselines`` for one call (reported in
        ``params``), as Captum's ``baselines`` fill what its perturbation methods remove."""
        if baselines is None:
            yield
            return
        kept = self.removal
        self.removal = BaselineFill(baselines)
        try:
            yield
        finally:
            self.removal = kept

    def game(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> RegionGame:
        return RegionGame(self.model, images, regions, self.removal, target, self.value, self.batch_size,
                          self._forward_args)  # fmt: skip

    def attribution(self, game: RegionGame, scores: Tensor, **fields: Any) -> Attribution:
        """An :class:`Attribution` of ``scores`` for the game's target, its ranking and the game's cost counters."""
        predicted = game.predicted()
        return Attribution(
            scores=scores,
            target=game.target,
            predicted=predicted,
            order=order_from_scores(scores, game.players),
            **self.counters(game),
            **fields,
        )

    @staticmethod
    def counters(game: RegionGame) -> dict[str, Any]:
        """The game's cost counters, as keyword arguments of :class:`Attribution`."""
        return {
            "evaluations": game.evaluations,
            "forward_seconds": game.forward_seconds,
            "removal_seconds": game.removal_seconds,
        }


def check_positive(name: str, value: Any, kind: type = int) -> Any:
    """``value`` as ``kind`` if it is > 0, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}")
    return kind(value)
