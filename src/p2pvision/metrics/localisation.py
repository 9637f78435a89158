"""Localisation against ground-truth masks m*: mask precision and IoU, PxAP, pointing game, relevance mass and
box localisation error (spec/metrics.md). All higher is better except the box localisation error.

Functions take batches: maps / keep masks (B,H,W) and ground truth (B,H,W) bool, and return per-image values (B,)
(NaN where a value is undefined, e.g. an empty m* for the pointing game, as in Quantus). Maps without a scale of
their own are compared after :func:`normalise_maps`. A method that explains with a soft map but keeps no hard mask
is binarised for precision and IoU by keeping its top pixels (:func:`top_share_mask`): by default as many as m*
has, which makes precision Quantus' relevance rank accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from p2pvision.explanation import Explanation
from p2pvision.metrics.base import METRICS, EvalBatch, Metric, check_choice, check_fraction
from p2pvision.regions.masks import hard_keep, mask_iou, mask_precision, top_share_mask

NORMALISATIONS = ("minmax", "none")


def normalise_maps(maps: Tensor, mode: str = "minmax") -> Tensor:
    """Maps (B,H,W) scaled per image to [0,1] (``"minmax"``; a constant map becomes 0) or clamped (``"none"``)."""
    maps = maps if maps.dtype.is_floating_point else maps.float()
    if mode == "none":
        return maps.clamp(0, 1)
    low = maps.flatten(1).amin(1).view(-1, 1, 1)
    high = maps.flatten(1).amax(1).view(-1, 1, 1)
    return ((maps - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)


def _empty_to_nan(values: Tensor, relevant: Tensor) -> Tensor:
    return values.float().masked_fill(~relevant.flatten(1).any(1), float("nan"))


def dilate(masks: Tensor, radius: int) -> Tensor:
    """Bool masks (B,H,W) grown by every pixel within Euclidean distance ``radius`` (a disk)."""
    if radius <= 0:
        return masks
    offsets = torch.arange(-radius, radius + 1, device=masks.device, dtype=torch.float32)
    disk = (offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2 <= radius**2).float()
    grown = F.conv2d(masks.float().unsqueeze(1), disk[None, None], padding=radius)
    return grown.squeeze(1) > 0.5


def pointing_game(maps: Tensor, relevant: Tensor, tolerance: int = 0) -> Tensor:
    """1 where a maximum of the map lies in m* grown by ``tolerance`` pixels, else 0; NaN for an empty m*.

    As in Quantus, any pixel tied for the maximum counts (a map constant over regions hits when its top region
    touches m*); ``tolerance=15`` is the original protocol of Zhang et al. at 224 px, 0 is Quantus'.
    """
    flat = maps.flatten(1)
    at_max = flat == flat.amax(1, keepdim=True)
    hit = (at_max & dilate(relevant, tolerance).flatten(1)).any(1)
    return _empty_to_nan(hit, relevant)


def relevance_mass(maps: Tensor, relevant: Tensor) -> Tensor:
    """Share of the positive attribution that lies inside m* (0 without positive attribution; NaN for empty m*).

    Quantus' relevance mass accuracy sums the signed map; here negative evidence is left out, so the two agree on
    non-negative maps.
    """
    positive = maps.float().clamp(min=0).flatten(1)
    total = positive.sum(1)
    inside = (positive * relevant.flatten(1)).sum(1)
    return _empty_to_nan(torch.where(total > 0, inside / total.clamp(min=1e-12), torch.zeros_like(total)), relevant)


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if len(rows) == 0:
        return None
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    height = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    width = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = height * width
    area = lambda box: (box[1] - box[0]) * (box[3] - box[2])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def box_localisation_error(maps: Tensor, relevant: Tensor, threshold: float = 0.2) -> Tensor:
    """0 where the box around the largest connected component of ``normalised map >= threshold`` overlaps the box
    around m* with IoU >= 0.5, else 1 (CAM's protocol, Zhou et al. 2016); NaN for an empty m*.

    Connected components are labelled with scipy per image: there is no batched torch labelling.
    """
    binary = (normalise_maps(maps) >= threshold).cpu().numpy()
    truth = relevant.cpu().numpy()
    errors = []
    for above, mask in zip(binary, truth):
        target = _box(mask)
        if target is None:
            errors.append(float("nan"))
            continue
        components, count = ndimage.label(above)
        if count == 0:
            errors.append(1.0)
            continue
        largest = np.bincount(components.ravel())[1:].argmax() + 1
        found = _box(components == largest)
        if found is None:  # the largest of count > 0 components has pixels
            raise RuntimeError("the largest connected component of a thresholded map is empty")
        errors.append(0.0 if _box_iou(found, target) >= 0.5 else 1.0)
    return torch.tensor(errors, device=maps.device)


def binary_keep(explanation: Explanation, batch: EvalBatch, share: float | None) -> Tensor:
    """The method's keep mask if it has one (see :func:`hard_keep`), else the top pixels of its map: ``share`` of
    the image, or as many as the ground-truth mask has (``share=None``)."""
    if explanation.keep is not None:
        return hard_keep(explanation.keep)
    if explanation.pixel_map is None:
        raise ValueError(f"a '{explanation.method}' explanation has neither a keep mask nor a pixel map to binarise")
    if share is not None:
        return top_share_mask(explanation.pixel_map, share)
    if batch.mask is None:
        raise ValueError("binarising a map to the area of the ground-truth mask (share=None) needs the mask")
    return top_share_mask(explanation.pixel_map, batch.mask.flatten(1).float().mean(1))


class _KeepMaskMetric(Metric):
    """Compares the method's keep mask (or its binarised map, see :func:`binary_keep`) with m*."""

    category = "localisation"
    higher_is_better = True
    requires = ("mask",)

    def __init__(self, share: float | None = None) -> None:
        super().__init__()
        self.share = None if share is None else check_fraction("share", share)

    def applicable(self, explanation: Explanation, batch: EvalBatch) -> bool:
        has_map = explanation.keep is not None or explanation.pixel_map is not None
        return super().applicable(explanation, batch) and has_map

    @property
    def params(self) -> dict[str, Any]:
        return {"binarised": "keep mask, else top pixels of the map", "share": self.share or "area of m*"}


@METRICS.register()
class MaskPrecision(_KeepMaskMetric):
    """``|keep & m*| / |keep|`` (0 for an empty keep mask): P2P's localisation precision."""

    name = "precision"

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        keep = binary_keep(explanation, batch, self.share)
        return {self.name: mask_precision(keep, self.required(batch.mask, "mask"))}


@METRICS.register()
class MaskIoU(_KeepMaskMetric):
    """Intersection over union of the keep mask and m*."""

    name = "iou"

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        keep = binary_keep(explanation, batch, self.share)
        return {self.name: mask_iou(keep, self.required(batch.mask, "mask"))}


@METRICS.register()
class ObjectShare(Metric):
    """Share of the kept pixels that lie on the object where the object is not the relevant region (the distractor
    digit of the scene task): lower is better. Applies where the evaluation knows such an ``object_mask``."""

    category = "localisation"
    name = "object_share"
    higher_is_better = False
    requires = ("keep", "object_mask")

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        keep, object_mask = self.required(explanation.keep, "keep"), self.required(batch.object_mask, "object_mask")
        return {self.name: mask_precision(hard_keep(keep), object_mask)}


@METRICS.register()
class PixelAveragePrecision(Metric):
    """PxAP (Choe et al. 2020): area under the pixel precision-recall curve over a whole data set.

    Maps are scaled per image (``normalise="minmax"``, as Choe et al.; ``"none"`` for scores already in [0,1]
    such as P2P's region probabilities). Streaming: each batch adds histograms of the scores of relevant and
    irrelevant pixels over ``bins`` equal-width bins of [0, 1]. Written here rather than with torchmetrics'
    binned average precision, which compares every pixel with every threshold (see benchmarks/bench_metrics.py).
    """

    category = "localisation"
    name = "pxap"
    higher_is_better = True
    requires = ("pixel_map", "mask")
    positive: Tensor  # states: pixel counts per score bin, relevant and irrelevant
    negative: Tensor

    def __init__(self, bins: int = 100, normalise: str = "minmax") -> None:
        super().__init__()
        self.bins = int(bins)
        self.normalise = check_choice("normalise", normalise, NORMALISATIONS)
        self.add_state("positive", torch.zeros(self.bins + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("negative", torch.zeros(self.bins + 1, dtype=torch.float64), dist_reduce_fx="sum")

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        raise NotImplementedError("PxAP is a data-set value, not a mean of per-image values")

    def update(self, explanation: Explanation, batch: EvalBatch) -> None:
        pixel_map, mask = self.required(explanation.pixel_map, "pixel_map"), self.required(batch.mask, "mask")
        scores = normalise_maps(pixel_map.detach(), self.normalise).double()
        # The small offset keeps scores that sit on a threshold (e.g. 0.29 with 100 bins) in their own bin.
        index = (scores * self.bins + 1e-9).floor().long().clamp(max=self.bins).flatten()
        relevant = mask.to(index.device).flatten()
        self.positive += torch.bincount(index[relevant], minlength=self.bins + 1).to(self.positive)
        self.negative += torch.bincount(index[~relevant], minlength=self.bins + 1).to(self.negative)

    def compute(self) -> dict[str, float]:
        # Pixels with score >= threshold t_i are predicted relevant: cumulative sums from the top bin down.
        true_positive = self.positive.flip(0).cumsum(0).flip(0)
        predicted = true_positive + self.negative.flip(0).cumsum(0).flip(0)
        total = self.positive.sum()
        if total == 0:
            return {self.name: float("nan")}
        precision = torch.where(predicted > 0, true_positive / predicted.clamp(min=1), torch.ones_like(predicted))
        recall = true_positive / total
        # Recall falls as the threshold rises; area = sum of precision * recall decrements (step rule).
        recall_next = torch.cat([recall[1:], recall.new_zeros(1)])
        return {self.name: float(((recall - recall_next) * precision).sum())}

    @property
    def params(self) -> dict[str, Any]:
        return {"bins": self.bins, "normalise": self.normalise}


@METRICS.register()
class PointingGame(Metric):
    """Share of images whose map maximum lies in m* (grown by ``tolerance`` pixels); see :func:`pointing_game`."""

    category = "localisation"
    name = "pointing_game"
    higher_is_better = True
    requires = ("pixel_map", "mask")

    def __init__(self, tolerance: int = 0) -> None:
        self.tolerance = int(tolerance)
        super().__init__((self.name if self.tolerance == 0 else f"{self.name}@{self.tolerance}px",))

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        pixel_map, mask = self.required(explanation.pixel_map, "pixel_map"), self.required(batch.mask, "mask")
        return {self.keys[0]: pointing_game(pixel_map, mask, self.tolerance)}

    @property
    def params(self) -> dict[str, Any]:
        return {"tolerance_px": self.tolerance}


@METRICS.register()
class RelevanceMass(Metric):
    """Share of positive attribution inside m*; see :func:`relevance_mass`."""

    category = "localisation"
    name = "relevance_mass"
    higher_is_better = True
    requires = ("pixel_map", "mask")

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        pixel_map, mask = self.required(explanation.pixel_map, "pixel_map"), self.required(batch.mask, "mask")
        return {self.name: relevance_mass(pixel_map, mask)}


@METRICS.register()
class BoxLocalisationError(Metric):
    """1 - box localisation hit rate; see :func:`box_localisation_error`."""

    category = "localisation"
    name = "box_error"
    higher_is_better = False
    requires = ("pixel_map", "mask")

    def __init__(self, threshold: float = 0.2) -> None:
        super().__init__()
        self.threshold = check_fraction("threshold", threshold, low_open=False)

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        pixel_map, mask = self.required(explanation.pixel_map, "pixel_map"), self.required(batch.mask, "mask")
        return {self.name: box_localisation_error(pixel_map, mask, self.threshold)}

    @property
    def params(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "iou": 0.5, "box": "largest component of the normalised map"}
