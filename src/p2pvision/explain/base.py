"""Common ground of the post-hoc explainers: the result type, the cost record and the base classes.

Every explainer is an object with ``explain(images, target=None, regions=None) -> ExplanationResult``. Images are
float (B,3,H,W) in [0,1]; ``regions`` (B,H,W) int64 are the players (computed with the explainer's partitioner
when not given); ``target`` is a class index, a (B,) tensor, or None for the model's own top-1 class.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor, nn

from p2pvision.errors import ConfigError
from p2pvision.game import RegionGame
from p2pvision.regions import (
    GridPartitioner,
    Partitioner,
    partition_batch,
    region_areas,
    region_mean,
    region_to_pixel,
)
from p2pvision.removal import Removal, TokenDropping, make_removal
from p2pvision.report.overlays import heatmap_overlay, side_by_side


@dataclass
class Cost:
    """What an explanation of a batch cost: model evaluations (images through the model; a forward+backward
    pass counts as one) and wall-clock seconds, of which ``forward_seconds`` in the model and
    ``removal_seconds`` filling removed pixels."""

    evaluations: int
    seconds: float
    forward_seconds: float = 0.0
    removal_seconds: float = 0.0
    images: int = 1

    def to_dict(self) -> dict[str, Any]:
        per_image = max(self.images, 1)
        return {
            "evaluations": self.evaluations,
            "evaluations_per_image": self.evaluations / per_image,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds / per_image,
            "forward_seconds": self.forward_seconds,
            "removal_seconds": self.removal_seconds,
            "images": self.images,
        }


@dataclass
class ExplanationResult:
    """An explanation of B images over K players.

    ``pixel_map`` (B,H,W) and ``scores`` (B,K) are higher where the method finds more evidence for ``target``
    (B,); ``order`` (B,K) lists players from most to least important where the method defines one (-1 pads
    players it did not rank); ``regions`` (B,H,W) are the players; ``params`` name the method, removal,
    partition and value; ``extra`` holds method-specific tensors (e.g. MoXI's curve).
    """

    method: str
    pixel_map: Tensor
    scores: Tensor
    regions: Tensor
    target: Tensor
    cost: Cost
    order: Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.scores.shape[0]

    def image_record(self, index: int, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-serialisable record of image ``index``: target, scores, order, cost per image and parameters."""
        target = int(self.target[index])
        players = int(self.regions[index].max()) + 1
        record: dict[str, Any] = {
            "method": self.method,
            "target": target,
            "scores": [float(v) for v in self.scores[index, :players]],
            "order": None if self.order is None else [int(v) for v in self.order[index] if v >= 0],
            "cost": {
                "evaluations": self.cost.evaluations / max(self.cost.images, 1),
                "seconds": self.cost.seconds / max(self.cost.images, 1),
            },
            "params": self.params,
        }
        if class_names is not None:
            record["target_name"] = class_names[target]
        for key, value in self.extra.items():
            record[key] = value[index].tolist()
        return record

    def overlay(
        self, images: Tensor, index: int, class_names: Sequence[str] | None = None, boundaries: bool = False
    ) -> Image.Image:
        """The image ``index`` of ``images`` (the explained batch) beside its map drawn over it, captioned."""
        target = int(self.target[index])
        label = class_names[target] if class_names is not None else f"class {target}"
        regions = self.regions[index] if boundaries else None
        caption = f"{self.method}: {label}"
        heat = heatmap_overlay(images[index], self.pixel_map[index], regions, caption=caption)
        return side_by_side([heatmap_overlay(images[index], None, caption=f"target {target}"), heat])

    def to_json(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-serialisable dict: method, parameters, batch cost and one record per image."""
        return {
            "method": self.method,
            "params": self.params,
            "cost": self.cost.to_dict(),
            "images": [self.image_record(i, class_names) for i in range(len(self))],
        }


@dataclass
class Attribution:
    """What a method computes; the base class adds maps, timing and bookkeeping to make the result."""

    scores: Tensor
    target: Tensor
    evaluations: int
    order: Tensor | None = None
    pixel_map: Tensor | None = None
    forward_seconds: float = 0.0
    removal_seconds: float = 0.0
    extra: dict[str, Tensor] = field(default_factory=dict)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and restore its training flag afterwards."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def order_from_scores(scores: Tensor, players: Tensor) -> Tensor:
    """Players by decreasing score (stable for ties), empty players last as -1: (B,K) -> (B,K) int64."""
    ranked = scores.masked_fill(~players, float("-inf"))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)
    return order.masked_fill(~players.gather(1, order), -1)


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class Explainer(ABC):
    """Base class: partitions the images, runs the method in eval mode and assembles the result."""

    name: ClassVar[str]

    def __init__(self, model: nn.Module, partitioner: Partitioner | None = None) -> None:
        self.model = model
        self.partitioner = partitioner if partitioner is not None else GridPartitioner(14)

    def explain(
        self, images: Tensor, target: int | Tensor | None = None, regions: Tensor | None = None
    ) -> ExplanationResult:
        """Explain ``images`` (B,3,H,W) in [0,1] for ``target`` (None: the model's top-1 class)."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
            raise ValueError(f"images must be a float tensor (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        images = images.detach().to(model_device(self.model))
        started = time.perf_counter()
        if regions is None:
            regions = partition_batch(images, self.partitioner)
        regions = regions.to(images.device)
        with eval_mode(self.model):
            attribution = self._attribute(images, regions, target)
        seconds = time.perf_counter() - started
        players = region_areas(regions, attribution.scores.shape[1]) > 0
        scores = attribution.scores.masked_fill(~players, 0.0)
        pixel_map = attribution.pixel_map if attribution.pixel_map is not None else region_to_pixel(scores, regions)
        cost = Cost(
            attribution.evaluations,
            seconds,
            attribution.forward_seconds,
            attribution.removal_seconds,
            images.shape[0],
        )
        return ExplanationResult(
            method=self.name,
            pixel_map=pixel_map.detach(),
            scores=scores.detach(),
            regions=regions,
            target=attribution.target,
            cost=cost,
            order=attribution.order,
            params={"method": self.name, **self.params, "partition": self.partitioner.params},
            extra=attribution.extra,
        )

    @abstractmethod
    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        """Run the method on checked inputs (model already in eval mode)."""

    @property
    def params(self) -> dict[str, Any]:
        """The method's parameters (JSON-serialisable), reported with every result."""
        return {}


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

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        value: str | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(model, partitioner)
        self.removal = make_removal(removal, model=model) if isinstance(removal, str) else removal
        self.value = value or self.default_value
        self.batch_size = batch_size

    def game(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> RegionGame:
        return RegionGame(self.model, images, regions, self.removal, target, self.value, self.batch_size)

    def attribution(self, game: RegionGame, scores: Tensor, **fields: Any) -> Attribution:
        """An :class:`Attribution` of ``scores`` for the game's target, its ranking and the game's cost counters."""
        return Attribution(
            scores=scores,
            target=game.target,
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

    @property
    def params(self) -> dict[str, Any]:
        return {"removal": self.removal.params, "value": self.value, "batch_size": self.batch_size}


def check_positive(name: str, value: Any, kind: type = int) -> Any:
    """``value`` as ``kind`` if it is > 0, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}")
    return kind(value)
