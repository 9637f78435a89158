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

Cost: ``planned_evaluations(num_players, height, width)`` is what a method will spend per image (model
evaluations, an upper bound where it may stop early), :meth:`Explainer.seconds_per_evaluation` times one batch like
the method's, and ``progress`` (a callable taking a number of evaluations) hears of every evaluation as it happens.
The defaults are CPU-friendly (a 224 px image in about a minute on 2 CPU cores with EfficientNet-Lite0); each
class's ``presets`` name other settings, ``"paper"`` the papers' (``make_explainer(..., preset="paper")``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from p2pvision.classifier import as_classifier, eval_mode, forward_args, forward_args_for
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation, check_images, order_from_scores
from p2pvision.game import RegionGame
from p2pvision.regions import (
    Partitioner,
    make_partitioner,
    partition_batch,
    region_areas,
    region_mean,
    region_to_pixel,
)
from p2pvision.registry import Registry
from p2pvision.removal import BaselineFill, Removal, TokenDropping, make_removal

EXPLAINERS: Registry[type[Explainer]] = Registry("explainer", package="p2pvision.explain")

# At most this many copies of an image in the timing probe of seconds_per_evaluation.
PROBE_IMAGES = 16


def make_explainer(
    name: str, model: nn.Module, mean: Any = None, std: Any = None, preset: str | None = None, **params: Any
) -> Explainer:
    """``EXPLAINERS.create(name, model, **params)``: an explainer by name (or alias) for ``model``, any PyTorch
    image classifier. ``mean``/``std``: the input normalisation of a plain network (one or three values each, e.g.
    ``processor.image_mean``); without them, a timm or Hugging Face model's own is read where it states one, else
    the network gets the images in [0, 1] as they are (see :func:`~p2pvision.classifier.as_classifier`).
    ``preset``: named settings of the method (``"paper"``: the papers' settings and partition; see
    :func:`preset_settings`), which ``params`` override."""
    return EXPLAINERS.create(name, as_classifier(model, mean, std), **preset_settings(name, preset, params))


def preset_settings(name: str, preset: str | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The constructor settings of explainer ``name`` under ``preset`` (None or ``"default"``: none), with
    ``params`` over them; a preset's ``partition`` (a mapping such as ``{"name": "grid", "grid": 14}``) becomes the
    ``partitioner`` unless ``params`` give one."""
    params = dict(params or {})
    if preset is None or preset == "default":
        return params
    cls = EXPLAINERS.get(name)
    if preset not in cls.presets:
        raise ConfigError(f"explainer '{EXPLAINERS.resolve(name)}' has no preset {preset!r}; choose one of "
                          f"default, {', '.join(cls.presets)}")  # fmt: skip
    settings = copy.deepcopy(cls.presets[preset])
    partition = settings.pop("partition", None)
    settings.update(params)
    if partition is not None and settings.get("partitioner") is None:
        settings["partitioner"] = make_partitioner(**partition)
    return settings


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
    """Base class: partitions the images, runs the method in eval mode and assembles the result.

    Class attributes a method may set: ``default_partition``, the players when no partitioner is given (a
    :func:`~p2pvision.regions.make_partitioner` mapping: part of the method's cost where it is quadratic in the
    players); ``presets``, named settings (``"paper"``: the papers', each a mapping of constructor settings and
    ``partition``; literals, so that the command line reads them without importing the method); ``backward``,
    whether an evaluation is a forward+backward pass (for the timing probe).
    """

    name: ClassVar[str]

    supports_baselines: ClassVar[bool] = False  # whether explain() takes baselines (a fill of removed pixels)
    default_partition: ClassVar[dict[str, Any]] = {"name": "grid", "grid": 14}
    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {}}
    backward: bool = False

    def __init__(self, model: nn.Module, partitioner: Partitioner | None = None) -> None:
        self.model = as_classifier(model)
        self.partitioner = partitioner if partitioner is not None else make_partitioner(**self.default_partition)
        self._forward_args: tuple[Any, ...] = ()
        # told the number of model evaluations as they happen (e.g. a progress bar's update); not a setting
        self.progress: Callable[[int], None] | None = None

    @classmethod
    def option_problem(cls, options: dict[str, Any]) -> tuple[str, Any, str] | None:
        """For a method taking open keyword ``options`` (``**options``: e.g. Captum's own), the first that cannot
        work as ``(key, value, what is allowed)``, checked without a model (configs are checked on load); None if
        all can. Methods whose settings are all named parameters have nothing to add: their annotations are
        checked."""
        return None

    def advance(self, evaluations: int) -> None:
        """Report ``evaluations`` model evaluations just made to :attr:`progress`."""
        if self.progress is not None and evaluations:
            self.progress(int(evaluations))

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int | None:
        """Model evaluations this method spends per image of ``height`` x ``width`` pixels with ``num_players``
        regions, explaining the model's own top-1 class (``target=None``; a given target costs at most as much):
        exactly what ``Explanation.evaluations`` counts, or an upper bound where :attr:`stops_early`; None where
        it cannot be known beforehand. Gradient and attention methods: one pass."""
        return 1

    @property
    def stops_early(self) -> bool:
        """Whether :meth:`planned_evaluations` is an upper bound that the method may stop short of."""
        return False

    def probe_size(self, planned: int) -> int:
        """How many images the timing probe evaluates at once: a batch like the method's (at most
        ``PROBE_IMAGES``)."""
        batch = getattr(self, "batch_size", 1)
        return max(1, min(int(batch), int(planned), PROBE_IMAGES))

    def seconds_per_evaluation(self, image: Tensor, regions: Tensor | None = None, count: int | None = None) -> float:
        """Seconds one model evaluation of this method takes here, from one timed batch of ``count`` (default
        :meth:`probe_size` of the planned evaluations) copies of ``image`` (1,3,H,W) or (3,H,W): a forward pass
        (with a backward pass where :attr:`backward`). The probe is counted in no explanation and reported to no
        :attr:`progress`."""
        image, regions = self._probe_inputs(image, regions)
        if count is None:
            planned = self.planned_evaluations(int(regions.max()) + 1, image.shape[2], image.shape[3])
            count = self.probe_size(planned or PROBE_IMAGES)
        copies = image.expand(count, -1, -1, -1).clone()
        with eval_mode(self.model):
            started = time.perf_counter()
            if self.backward:
                with torch.enable_grad():
                    inputs = copies.requires_grad_(True)
                    torch.autograd.grad(self.model(inputs).amax(dim=1).sum(), inputs)
            else:
                with torch.no_grad():
                    self.model(copies)
            return (time.perf_counter() - started) / count

    def _probe_inputs(self, image: Tensor, regions: Tensor | None) -> tuple[Tensor, Tensor]:
        image = image.detach().to(model_device(self.model))
        image = image[:1] if image.ndim == 4 else image.unsqueeze(0)
        check_images(image)
        if regions is None:
            regions = partition_batch(image, self.partitioner)
        regions = regions.to(image.device)
        return image, (regions[:1] if regions.ndim == 3 else regions.unsqueeze(0))

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
                self.advance(extra_evaluations)
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
        """The region game of this call, reporting its evaluations to :attr:`progress`."""
        return RegionGame(self.model, images, regions, self.removal, target, self.value, self.batch_size,
                          self._forward_args, progress=self.progress)  # fmt: skip

    def seconds_per_evaluation(self, image: Tensor, regions: Tensor | None = None, count: int | None = None) -> float:
        """As :meth:`Explainer.seconds_per_evaluation`, through the region game with this explainer's removal: one
        batch of ``count`` copies of ``image`` with random halves of its players kept (the hole-independent fills,
        computed once per image, are not timed)."""
        image, regions = self._probe_inputs(image, regions)
        num_players = int(regions.max()) + 1
        if count is None:
            count = self.probe_size(self.planned_evaluations(num_players, image.shape[2], image.shape[3]) or 1)
        with eval_mode(self.model):
            game = RegionGame(self.model, image, regions, self.removal, 0, self.value, count)
            generator = torch.Generator().manual_seed(0)
            coalitions = (torch.rand(1, count, num_players, generator=generator) < 0.5).to(image.device)
            started = time.perf_counter()
            if self.backward:
                keep = region_to_pixel(coalitions.float(), regions).requires_grad_(True)
                torch.autograd.grad(game.masked_values(keep, grad=True).sum(), keep)
            else:
                with torch.no_grad():
                    game(coalitions)
            return (time.perf_counter() - started) / count

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
