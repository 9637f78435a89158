"""The per-image tau search of P2P inference: which budget tau each image is classified at.

The spec's rule: per image, the smallest tau on a grid whose hard-mask prediction is delta-certain (top class
probability >= delta), else the largest tau. The searches here differ only in which (image, grid point) pairs
they classify; a :class:`MaskEvaluator` does the classifying for all of them:

- the selector backbone and the tau-free part of the head run once per image (:class:`TauQuery`), so a grid point
  costs the small cached head plus, at most, one classifier pass;
- the classifier runs on an image only when its hard mask differs from the last mask classified for it (the same
  input gives the same logits): along a walk up the grid many neighbouring taus keep the same regions;
- every classified (image, point) is remembered, so a search never pays twice for a point, and the returned
  prediction is always the classifier's output at the returned tau.

Searches: ``grid`` is the reference (walk up, stop at the first certain point). ``bisection`` assumes certainty
grows with tau, which it often does not: on trained models 3-6 % of the images are certain at some tau but not
at tau = 1. ``endpoints`` (the default) is built on what the certainty curves look like: it classifies the first
point, then the last; an image uncertain at both whose top-class log-odds stay more than ``margin`` below delta's
at both ends is taken as certain nowhere (answer: the last point); the others (certain at the last point, or near
certain at an end) walk up the grid, ``WALK_STEP`` points per batched call, to their first certain point. Masks
that do not change cost nothing, and the walk needs at most 3 calls where a bisection of the last-certain images
needed up to 5 sequential calls of one or two images each (a one-image pass of the demo's classifier costs as much
as five to seven images in a batch of 64); walking also finds the first certain point where certainty is not
monotone.
On the 1000 test images of two demo checkpoints (trained on two machines), agreement with ``grid`` and classifier
passes per image: at delta = 0.99, 99.8 % at 2.64 and 99.5 % at 2.71 (the grid walk: 9.2-9.7); at 0.95, 99.2 % at
2.63 and 99.5 % at 2.60; at 0.9, 99.3 % at 2.33 and 2.24; at 0.8, 99.5 % at 2.28 and 98.7 % at 2.08
(``benchmarks/bench_p2p.py``). The margin trades one for the other; on the second checkpoint: 0.1 gives 99.0 % at
2.05 passes at delta 0.99 but 97.7 % at 0.9, 1.0 gives 99.9 % at 3.55 and 99.7 % at 2.90.

A learned predictor of the certainty curve was the alternative. Simulated on the full certainty curves of
those images with a least-squares fit of the first point's log-odds on 3000 training images (from the selector's
pooled features and, once the last point is classified, its logits), skipping the first point where it predicts
no certainty: at delta = 0.99 it saves 0.43 passes per image (99.6 % agreement) but only 0.07-0.12 at 0.8-0.95,
for a fitting step and a stored model; this rule needs no fitting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.selector import HeadCache

SEARCH_METHODS = ("endpoints", "grid", "bisection")
WALK_STEP = 6  # grid points per batched call of the "endpoints" walk: 3 calls cover the 18 middle points
DEFAULT_MARGIN = 0.5  # log-odds below delta under which "endpoints" trusts that no middle tau is delta-certain


@dataclass
class RegionOutputs:
    """Selector outputs aggregated over regions for one tau per image."""

    logits: Tensor  # (B, K) region selection logits mu (0 in empty slots)
    embeddings: Tensor  # (B, K, D) region embeddings e (0 in empty slots)
    areas: Tensor  # (B, K) pixel counts
    expected_kept: Tensor  # (B,) p_bar: area-weighted mean of sigmoid(mu)


@dataclass
class TauQuery:
    """The tau-free part of the selector for a batch, from which region outputs at any tau are cheap: the cached
    head, the region areas and the number of pixels per image."""

    head: HeadCache
    areas: Tensor  # (B, K)
    pixels: int

    def subset(self, index: Tensor) -> TauQuery:
        """The query of the images ``index`` (``index_select``: several times faster than indexing on CPU)."""
        return TauQuery(self.head.subset(index), self.areas.index_select(0, index), self.pixels)


@dataclass
class SearchResult:
    """Outcome of the tau search: per image the chosen tau, its class logits, region logits and cost."""

    tau: Tensor  # (B,)
    logits: Tensor  # (B, C)
    region_logits: Tensor  # (B, K)
    embeddings: Tensor  # (B, K, D)
    evaluations: Tensor  # (B,) classifier passes spent on each image


def hard_keep(logits: Tensor, areas: Tensor, min_regions: int = 1) -> Tensor:
    """The test-time hard mask (B, K) from region logits ``mu`` and areas (B, K): the present regions with
    ``mu > 0``; an image that keeps fewer than ``min_regions`` keeps its ``min_regions`` present regions of largest
    ``mu`` instead (all of them if it has fewer)."""
    present = areas > 0
    kept = (logits > 0) & present
    short = kept.sum(-1) < min_regions
    if min_regions > 0 and bool(short.any()):
        count = min(min_regions, logits.shape[-1])
        ranked = logits.masked_fill(~present, float("-inf")).topk(count, dim=-1).indices
        top = torch.zeros_like(kept).scatter_(-1, ranked, True) & present
        kept = torch.where(short[:, None], kept | top, kept)
    return kept


class SearchModel(Protocol):
    """What a search needs of a P2P model."""

    config: P2PConfig

    def query_outputs(self, query: TauQuery, tau: Tensor) -> RegionOutputs: ...

    def classify_regions(self, images: Tensor, regions: Tensor, masks: Tensor) -> Tensor: ...


class MaskEvaluator:
    """Classifies images at grid points with hard masks, skipping unchanged masks and remembering every answer."""

    def __init__(
        self, model: SearchModel, images: Tensor, regions: Tensor, query: TauQuery, grid: tuple[float, ...]
    ) -> None:
        self.model, self.images, self.regions, self.query = model, images, regions, query
        device = images.device
        self.grid = torch.tensor(grid, device=device, dtype=torch.float32)
        batch, slots = query.areas.shape
        self.confidence = torch.full((batch, len(grid)), float("nan"), device=device)  # top class probability
        self.logits = torch.zeros(batch, len(grid), model.config.num_classes, device=device)
        self.evaluations = torch.zeros(batch, dtype=torch.long, device=device)
        self._last_mask = torch.zeros(batch, slots, dtype=torch.bool, device=device)
        self._last_logits = torch.zeros(batch, model.config.num_classes, device=device)
        self._classified = torch.zeros(batch, dtype=torch.bool, device=device)

    @property
    def size(self) -> int:
        return len(self.query.areas)

    def masks(self, rows: Tensor, points: Tensor) -> Tensor:
        """Hard masks (len(rows), K) of images ``rows`` at grid indices ``points`` (the cached head only)."""
        outputs = self.model.query_outputs(self.query.subset(rows), self.grid[points])
        return hard_keep(outputs.logits, outputs.areas, self.model.config.min_kept_regions)

    def confidences(self, rows: Tensor, points: Tensor) -> Tensor:
        """Top class probability of images ``rows`` at grid indices ``points`` (classifying where not yet known)."""
        unknown = torch.isnan(self.confidence[rows, points])
        if unknown.any():
            self._classify(rows[unknown], points[unknown])
        return self.confidence[rows, points]

    def _classify(self, rows: Tensor, points: Tensor) -> None:
        """Classify (image, point) pairs, those of one image adjacent and in the order a walk visits them: a pair
        whose mask equals the image's previous one (the last classified, for its first pair) reuses its logits; the
        rest go to the classifier in batched calls of at most the query's size."""
        count = len(rows)
        masks = self.masks(rows, points)
        position = torch.arange(count, device=rows.device)
        starts = torch.ones(count, dtype=torch.bool, device=rows.device)  # the first pair of each image
        starts[1:] = rows[1:] != rows[:-1]
        previous = torch.roll(masks, 1, 0)
        previous[starts] = self._last_mask[rows[starts]]
        changed = (masks != previous).any(1) | (starts & ~self._classified[rows])
        logits = torch.zeros(count, self._last_logits.shape[1], device=rows.device)
        new = position[changed]
        for chunk in (new[start : start + self.size] for start in range(0, len(new), self.size)):
            picked = rows[chunk]
            images, regions = self.images.index_select(0, picked), self.regions.index_select(0, picked)
            # bool masks: the fill selects pixels (one torch.where), where float ones would blend (four operations)
            logits[chunk] = self.model.classify_regions(images, regions, masks[chunk][:, None]).float()
        source = torch.cummax(torch.where(changed, position, -1), 0).values  # the pair whose logits each one shows
        first = torch.cummax(torch.where(starts, position, 0), 0).values
        inherited = source < first  # no change since the image's last classification
        logits = torch.where(inherited[:, None], self._last_logits[rows], logits[source.clamp_min(0)])
        self.logits[rows, points] = logits
        self.confidence[rows, points] = logits.softmax(-1).amax(-1)
        self.evaluations.index_add_(0, rows[changed], torch.ones_like(new))
        ends = torch.ones(count, dtype=torch.bool, device=rows.device)  # the last pair of each image
        ends[:-1] = rows[:-1] != rows[1:]
        self._last_mask[rows[ends]] = masks[ends]
        self._last_logits[rows[ends]] = logits[ends]
        self._classified[rows[ends]] = True

    def result(self, points: Tensor) -> SearchResult:
        """The search's answer: every image at its grid index ``points`` (B,), classified there if it was not."""
        everyone = torch.arange(self.size, device=points.device)
        self.confidences(everyone, points)
        outputs = self.model.query_outputs(self.query, self.grid[points])
        return SearchResult(
            tau=self.grid[points],
            logits=self.logits[everyone, points],
            region_logits=outputs.logits.float(),
            embeddings=outputs.embeddings.float(),
            evaluations=self.evaluations,
        )


def grid_search(evaluator: MaskEvaluator, delta: float) -> SearchResult:
    """Walk up the grid; stop for an image at its first delta-certain point (the spec's search, the reference)."""
    points = torch.full((evaluator.size,), len(evaluator.grid) - 1, device=evaluator.grid.device)
    pending = torch.arange(evaluator.size, device=evaluator.grid.device)
    for index in range(len(evaluator.grid)):
        certain = evaluator.confidences(pending, torch.full_like(pending, index)) >= delta
        points[pending[certain]] = index
        pending = pending[~certain]
        if len(pending) == 0:
            break
    return evaluator.result(points)


def endpoint_search(evaluator: MaskEvaluator, delta: float, margin: float = DEFAULT_MARGIN) -> SearchResult:
    """The first grid point, then the last, then a search only where a middle point may be certain (see above)."""
    device, last = evaluator.grid.device, len(evaluator.grid) - 1
    everyone = torch.arange(evaluator.size, device=device)
    points = torch.full((evaluator.size,), last, device=device)
    first = evaluator.confidences(everyone, torch.zeros_like(everyone))
    points[first >= delta] = 0
    rest = everyone[first < delta]
    at_last = evaluator.confidences(rest, torch.full_like(rest, last))
    odds = min(max(delta, 1e-7), 1 - 1e-7)
    near = torch.logit(torch.maximum(first[rest], at_last), eps=1e-7) >= math.log(odds / (1 - odds)) - margin
    walking = rest[(at_last >= delta) | near]
    for start in range(1, last, WALK_STEP):  # a few grid points per batched call, in order
        if len(walking) == 0:
            break
        span = torch.arange(start, min(start + WALK_STEP, last), device=device)
        certain = evaluator.confidences(walking.repeat_interleave(len(span)), span.repeat(len(walking)))
        certain = certain.view(len(walking), len(span)) >= delta
        found = certain.any(1)
        points[walking[found]] = span[certain.int().argmax(1)[found]]
        walking = walking[~found]
    return evaluator.result(points)


def bisection_search(evaluator: MaskEvaluator, delta: float) -> SearchResult:
    """Halve the grid interval per step, assuming certainty grows with tau (about log2(grid) points per image)."""
    device = evaluator.grid.device
    rows = torch.arange(evaluator.size, device=device)
    lows = torch.zeros(evaluator.size, dtype=torch.long, device=device)  # first index that may be certain
    highs = torch.full((evaluator.size,), len(evaluator.grid) - 1, device=device)  # the answer if none below is
    while bool((lows < highs).any()):
        pending = rows[lows < highs]
        middle = (lows[pending] + highs[pending]) // 2
        certain = evaluator.confidences(pending, middle) >= delta
        highs[pending] = torch.where(certain, middle, highs[pending])
        lows[pending] = torch.where(certain, lows[pending], middle + 1)
    return evaluator.result(highs)
