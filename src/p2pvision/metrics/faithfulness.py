"""Faithfulness: does the model behave as the explanation says when the important parts are kept or removed?

Every metric here queries the model through the shared :class:`~p2pvision.game.RegionGame` with a removal
strategy it reports (``removal`` is a name, or ``{"name": ..., **params}``), for the class the method predicted:

- P2P protocol (:class:`P2PAgreement`): rank the method's own regions by score; insertion keeps the top regions
  covering less than t of the area, deletion removes them until at least t is gone (t = 5/10/20%); the value is
  agreement with the method's own prediction (insertion higher, deletion lower is better). By default
  (``base="masked"``, as in the authors' code) this acts on the input the method kept: regions a P2P model removed
  stay removed in every curve point; ``base="original"`` starts from the whole image instead. For explanations
  without a kept input (post-hoc maps) both are the same.
- RISE (:class:`RiseAUC`, Petsiuk et al. 2018): insert (remove) features in decreasing map order; area under the
  target-probability curve (insertion from a blurred image: higher is better; deletion to black: lower).
- MoXI protocol (:class:`MoxiAccuracy`): accuracy over the data set vs. the share of patches visible (insertion)
  or masked (deletion); point readings at 4% visible and 10% masked.
- Saliency metric (:class:`SaliencyMetric`, Dabkowski & Gal 2017): classify the tightest box around the
  thresholded map, ``log(max(area, 0.05)) - log(p_target)``; lower is better.
- Leakage (:class:`InverseMaskLeakage`, the COMET^-1 check): accuracy on the inverted keep mask; a faithful mask
  should lose it (lower is better).

Features for RISE and MoXI are single pixels (``features="pixels"``) or the regions of a partition
(``features={"name": "grid", "grid": 14}``) scored by the mean of the map over each region; the k-th point of a
curve moves ``round(x_k * F)`` of an image's F features.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.game import VALUES, RegionGame
from p2pvision.metrics.base import METRICS, EvalBatch, Metric, check_choice, check_fraction
from p2pvision.metrics.localisation import normalise_maps
from p2pvision.regions import make_partitioner, partition_batch, region_mean
from p2pvision.removal import Removal, TokenDropping, make_removal

AREA_SHARES = (0.05, 0.10, 0.20)
MODES = ("insertion", "deletion")


def ranked_coalitions(scores: Tensor, areas: Tensor, share: float, mode: str) -> Tensor:
    """Bool coalitions (B,1,K) of kept regions for ``mode`` "insertion" or "deletion" at area ``share``.

    Regions are ranked by ``scores`` (B,K), highest first; empty slots (area 0) never count.
    """
    order = scores.masked_fill(areas <= 0, float("-inf")).argsort(dim=1, descending=True)
    sorted_areas = areas.gather(1, order).double()  # pixel counts: exact sums
    budget = share * areas.double().sum(1, keepdim=True)
    after = sorted_areas.cumsum(1)
    if mode == "insertion":
        chosen_sorted = after < budget  # top regions whose running total stays below the share
    elif mode == "deletion":
        chosen_sorted = (after - sorted_areas) < budget  # removed until at least the share is gone
    else:
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    chosen = torch.zeros_like(chosen_sorted).scatter(1, order, chosen_sorted)
    keep = chosen if mode == "insertion" else ~chosen
    return (keep & (areas > 0))[:, None]


def ranking_agreement(
    game: RegionGame,
    scores: Tensor,
    reference: Tensor,
    shares: tuple[float, ...] = AREA_SHARES,
    modes: tuple[str, ...] = MODES,
    within: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per image agreement (B,) with ``reference`` classes for each mode at each area share (``"insertion@10"``);
    ``within`` (B, K) bool, if given, removes the regions outside it at every point (the P2P-masked image)."""
    areas = game.areas.to(scores.device, scores.dtype)
    result = {}
    for mode in modes:
        for share in shares:
            coalitions = ranked_coalitions(scores, areas, share, mode)
            if within is not None:
                coalitions = coalitions & within.to(coalitions.device)[:, None]
            _, predicted = game.evaluate(coalitions.to(game.images.device))
            result[f"{mode}@{int(round(share * 100))}"] = (predicted[:, 0].cpu() == reference.cpu()).float()
    return result


def feature_ranks(scores: Tensor, players: Tensor) -> Tensor:
    """Rank (B,F) of every feature by decreasing score (0 = most important, ties in index order; empty last)."""
    order = scores.masked_fill(~players, float("-inf")).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def curve_coalitions(ranks: Tensor, players: Tensor, points: Tensor, mode: str) -> Tensor:
    """Bool coalitions (B,P,F): at point x_k the top ``round(x_k * F)`` features are inserted (kept) or deleted."""
    counts = (points.to(players.device).view(1, -1) * players.sum(1, keepdim=True)).round().long()
    moved = ranks.unsqueeze(1) < counts.unsqueeze(2)
    return (moved if mode == "insertion" else ~moved) & players.unsqueeze(1)


def removal_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, params) of a removal given as a name or ``{"name": ..., **params}``."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return spec["name"], {key: value for key, value in spec.items() if key != "name"}
    raise ConfigError(f"removal must be a name or {{name: ..., params}}, got {spec!r}")


class _GameMetric(Metric):
    """A metric that queries ``batch.model`` through a region game with its removal strategy."""

    category = "faithfulness"
    def __init__(self, removal: str | dict[str, Any], value: str, keys: tuple[str, ...] | None = None) -> None:
        super().__init__(keys)
        self.removal_name, self.removal_params = removal_spec(removal)
        self.removal_settings = make_removal(self.removal_name, **self.removal_params).params  # checks them now
        if self.removal_name == "mean" and "mean" not in self.removal_params:
            self.removal_settings = {"name": "mean", "mean": "the model's normalisation mean (0 after it), or each "
                                     "image's mean colour where the normalisation is unknown"}  # fmt: skip
        self.value = check_choice("value", value, VALUES)

    def removal(self, model: nn.Module) -> Removal | TokenDropping:
        return make_removal(self.removal_name, model=model, **self.removal_params)

    def game(self, explanation: Explanation, batch: EvalBatch, regions: Tensor) -> RegionGame:
        images, model = batch.images, self.required(batch.model, "model")
        return RegionGame(model, images, regions.to(images.device), self.removal(model),
                          target=explanation.target.to(images.device), value=self.value)  # fmt: skip

    @property
    def params(self) -> dict[str, Any]:
        return {"removal": self.removal_settings, "value": self.value}


@METRICS.register()
class P2PAgreement(_GameMetric):
    """P2P protocol: agreement with the method's own prediction after keeping (insertion) or removing (deletion)
    its top-ranked regions up to each area share (keys ``insertion@5`` ...)."""

    name = "p2p_agreement"
    requires = ("model", "regions", "scores")

    def __init__(
        self,
        mode: str = "insertion",
        shares: tuple[float, ...] = AREA_SHARES,
        removal: str | dict = "black",
        base: str = "masked",
    ) -> None:
        self.mode = check_choice("mode", mode, MODES)
        self.shares = tuple(check_fraction("share", share) for share in shares)
        self.base = check_choice("base", base, ("masked", "original"))
        super().__init__(removal, "prob", tuple(f"{self.mode}@{int(round(s * 100))}" for s in self.shares))

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        return self.mode == "insertion"

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        regions, scores = self.required(explanation.regions, "regions"), self.required(explanation.scores, "scores")
        game = self.game(explanation, batch, regions)
        within = None
        if self.base == "masked" and explanation.keep is not None:  # the regions the method kept (any kept pixel)
            kept = region_mean(explanation.keep.to(regions.device, torch.float32)[:, None], regions, scores.shape[1])
            within = kept[..., 0] > 0
        return ranking_agreement(game, scores.to(batch.images.device), explanation.target, self.shares, (self.mode,),
                                 within)  # fmt: skip

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "mode": self.mode, "area_shares": list(self.shares), "base": self.base,
                "features": "the method's own regions"}  # fmt: skip


class _FeatureCurve(_GameMetric):
    """Curves over features moved in decreasing map order (see the module docstring)."""

    requires: ClassVar[tuple[str, ...]] = ("model", "pixel_map")

    def __init__(
        self,
        mode: str,
        removal: str | dict[str, Any],
        features: str | dict[str, Any],
        points: Tensor,
        value: str,
        keys: tuple[str, ...],
    ) -> None:
        self.mode = check_choice("mode", mode, MODES)
        if isinstance(features, str) and features != "pixels":
            raise ConfigError(f"features must be 'pixels' or {{name: ..., params}} of a partition, got {features!r}")
        self.partitioner = None if isinstance(features, str) else make_partitioner(**dict(features))
        super().__init__(removal, value, keys)
        self.track_curve(points)

    @property
    def higher_is_better(self) -> bool:  # type: ignore[override]
        return self.mode == "insertion"

    def run_curve(self, explanation: Explanation, batch: EvalBatch) -> tuple[Tensor, Tensor]:
        """Values and top-1 classes (B,P) at every point of the curve."""
        images = batch.images
        maps = self.required(explanation.pixel_map, "pixel_map").to(images.device).float()
        count, _, height, width = images.shape
        if self.partitioner is None:
            regions = torch.arange(height * width, device=images.device).view(1, height, width).expand(count, -1, -1)
            regions, scores = regions.contiguous(), maps.flatten(1)
        else:
            regions = partition_batch(images, self.partitioner)
            scores = region_mean(maps.unsqueeze(1), regions, int(regions.max()) + 1).squeeze(-1)
        game = self.game(explanation, batch, regions)
        ranks = feature_ranks(scores, game.players)
        return game.evaluate(curve_coalitions(ranks, game.players, self.points, self.mode))

    @property
    def params(self) -> dict[str, Any]:
        features = "pixels" if self.partitioner is None else self.partitioner.params
        return {**super().params, "mode": self.mode, "features": features, "points": len(self.points)}


@METRICS.register()
class RiseAUC(_FeatureCurve):
    """RISE insertion or deletion: area under the target-probability curve over ``steps`` equal steps of the
    features (default: pixels; insertion starts from a blurred image, deletion ends at black)."""

    name = "rise"

    def __init__(
        self,
        mode: str = "insertion",
        steps: int = 32,
        removal: str | dict[str, Any] | None = None,
        features: str | dict[str, Any] = "pixels",
        value: str = "prob",
    ) -> None:
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        removal = removal or ("blur" if mode == "insertion" else "black")
        super().__init__(mode, removal, features, torch.linspace(0, 1, steps + 1), value, (f"rise_{mode}_auc",))

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        curves, _ = self.run_curve(explanation, batch)
        self.add_curves(curves)
        return {self.keys[0]: torch.trapezoid(curves.double(), self.points.to(curves.device), dim=1)}

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "steps": len(self.points) - 1}


@METRICS.register()
class MoxiAccuracy(_FeatureCurve):
    """MoXI protocol: accuracy (top-1 == label) vs. the share of patches visible (insertion) or masked (deletion),
    read at ``readings`` percent (default 4% visible, 10% masked); the curve has ``steps`` equal steps too."""

    name = "moxi_accuracy"
    requires = ("model", "pixel_map", "labels")

    def __init__(
        self,
        mode: str = "insertion",
        readings: tuple[float, ...] | None = None,
        steps: int = 20,
        removal: str | dict[str, Any] = "mean",
        features: str | dict[str, Any] | None = None,
    ) -> None:
        mode = check_choice("mode", mode, MODES)
        self.readings = tuple(readings or ((4,) if mode == "insertion" else (10,)))
        shares = [check_fraction("reading", r / 100, low_open=False) for r in self.readings]
        points = torch.cat([torch.linspace(0, 1, steps + 1), torch.tensor(shares)]).unique()
        keys = tuple(f"moxi_{mode}@{r:g}" for r in self.readings)
        super().__init__(mode, removal, features or {"name": "grid", "grid": 14}, points, "prob", keys)
        self.reading_index = [int((self.points - s).abs().argmin()) for s in shares]

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        _, predictions = self.run_curve(explanation, batch)
        labels = self.required(batch.labels, "labels").to(predictions.device)
        correct = (predictions == labels.view(-1, 1)).double()
        correct[labels < 0] = float("nan")
        self.add_curves(correct[labels >= 0])
        return {key: correct[:, index] for key, index in zip(self.keys, self.reading_index)}

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "readings_percent": list(self.readings)}


def crop_boxes(images: Tensor, boxes: Tensor) -> Tensor:
    """Crop boxes (B,4) = (top, bottom, left, right) in pixels (end exclusive) and resize each to the image size
    (bilinear), batched with an affine sampling grid."""
    batch, _, height, width = images.shape
    boxes = boxes.to(images.dtype)
    scale_y, scale_x = (boxes[:, 1] - boxes[:, 0]) / height, (boxes[:, 3] - boxes[:, 2]) / width
    centre_y = (boxes[:, 0] + boxes[:, 1]) / height - 1
    centre_x = (boxes[:, 2] + boxes[:, 3]) / width - 1
    theta = torch.zeros(batch, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = scale_x, centre_x, scale_y, centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Sample only inside the box (from its first to its last pixel centre), as resizing the cropped image does.
    low = torch.stack([(2 * boxes[:, 2] + 1) / width, (2 * boxes[:, 0] + 1) / height], 1) - 1
    high = torch.stack([(2 * boxes[:, 3] - 1) / width, (2 * boxes[:, 1] - 1) / height], 1) - 1
    grid = torch.maximum(torch.minimum(grid, high.view(-1, 1, 1, 2)), low.view(-1, 1, 1, 2))
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def tight_boxes(binary: Tensor) -> Tensor:
    """(B,4) boxes (top, bottom, left, right) around the True pixels of (B,H,W); the whole image where none are."""
    _, height, width = binary.shape

    def span(any_along: Tensor, size: int) -> tuple[Tensor, Tensor]:
        first = any_along.float().argmax(1)
        last = size - any_along.flip(1).float().argmax(1)
        empty = ~any_along.any(1)
        return first.masked_fill(empty, 0), last.masked_fill(empty, size)

    top, bottom = span(binary.any(2), height)
    left, right = span(binary.any(1), width)
    return torch.stack([top, bottom, left, right], dim=1)


@METRICS.register()
class SaliencyMetric(Metric):
    """Dabkowski & Gal (2017): ``log(max(a, min_area)) - log(p)`` with ``a`` the area share of the tightest box
    around ``normalised map >= threshold`` and ``p`` the target probability of that box cropped and resized to
    the input size. Lower is better."""

    category = "faithfulness"
    name = "saliency_metric"
    higher_is_better = False
    requires = ("model", "pixel_map")

    def __init__(self, threshold: float = 0.5, min_area: float = 0.05) -> None:
        super().__init__()
        self.threshold = check_fraction("threshold", threshold, low_open=False)
        self.min_area = check_fraction("min_area", min_area)

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        images, model = batch.images, self.required(batch.model, "model")
        pixel_map = self.required(explanation.pixel_map, "pixel_map")
        boxes = tight_boxes(normalise_maps(pixel_map.to(images.device)) >= self.threshold)
        area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / (images.shape[2] * images.shape[3])
        logits = model(crop_boxes(images, boxes))
        log_p = logits.float().log_softmax(1).gather(1, explanation.target.to(images.device).view(-1, 1)).squeeze(1)
        return {self.name: area.float().clamp(min=self.min_area).log() - log_p}

    @property
    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "min_area": self.min_area, "resize": "bilinear"}


@METRICS.register()
class InverseMaskLeakage(_GameMetric):
    """Accuracy when the model sees only what the method's keep mask removed (``1 - keep``, filled with
    ``removal``): a mask that leaks class information through its shape or soft values keeps accuracy here."""

    name = "leakage"
    higher_is_better = False
    requires = ("model", "keep", "labels")

    def __init__(self, removal: str | dict[str, Any] = "black") -> None:
        super().__init__(removal, "prob", ("inverse_accuracy",))

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        keep = self.required(explanation.keep, "keep").to(batch.images.device)
        inverted = ~keep if keep.dtype == torch.bool else 1 - keep.float()
        whole = torch.zeros_like(keep, dtype=torch.int64)  # one region: the game only composes and counts
        _, predicted = self.game(explanation, batch, whole).masked(inverted.unsqueeze(1))
        predicted = predicted[:, 0]
        labels = self.required(batch.labels, "labels").to(predicted.device)
        return {self.keys[0]: (predicted == labels).double().masked_fill(labels < 0, float("nan"))}
