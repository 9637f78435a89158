"""Sliding patch (SP), i.e. occlusion (Zeiler & Fergus 2014), with any removal (SP-G with an inpainting fill).

Written on the region game's pixel masks rather than with Captum's ``Occlusion``, whose baseline is a fixed
tensor: inpainting must see each window's hole, and the windows of all images go through one chunked,
cost-counted game.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from p2pvision.config import PositiveInt
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer, check_positive, pixel_scores
from p2pvision.regions import Partitioner
from p2pvision.removal import Removal, TokenDropping


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Start offsets of windows of ``size`` every ``stride`` pixels; the last one ends at the border."""
    if size >= length:
        return [0]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


@EXPLAINERS.register(aliases=("sp", "occlusion"))
class SlidingPatch(PerturbationExplainer):
    """Each ``patch`` x ``patch`` window, every ``stride`` pixels, is removed in turn; its score is
    ``f(x) - f(x without the window)`` (target probability by default, as in Agarwal & Nguyen). A pixel's value
    is the mean score of the windows covering it; player scores are the region means of that map.

    Cost: one evaluation per window, one for the full image and one for the target. Defaults: the reference's
    41 px patches every 16 px (169 windows at 224 px); the ``paper`` preset: every 3 px (3,844 windows), as
    Agarwal & Nguyen.
    """

    name = "sliding_patch"
    default_value = "prob"
    presets = {"paper": {"patch": 41, "stride": 3}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        patch: PositiveInt = 41,
        stride: PositiveInt = 16,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.patch = check_positive("patch", patch)
        self.stride = check_positive("stride", stride)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        rows, columns = window_starts(height, self.patch, self.stride), window_starts(width, self.patch, self.stride)
        return len(rows) * len(columns) + 2

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, _, height, width = images.shape
        windows = [
            (top, left)
            for top in window_starts(height, self.patch, self.stride)
            for left in window_starts(width, self.patch, self.stride)
        ]
        # the full image (None: nothing removed) and every window, in calls of nearly equal sizes that each fill
        # about one forward pass of the game
        masks: list[tuple[int, int] | None] = [None, *windows]
        calls = -(-len(masks) // max(1, game.batch_size // batch))
        bounds = [len(masks) * i // calls for i in range(calls + 1)]
        total = torch.zeros(batch, height, width, device=images.device)
        covered = torch.zeros(height, width, device=images.device)
        values = []
        for first, last in zip(bounds[:-1], bounds[1:]):
            keep = torch.ones(batch, last - first, height, width, dtype=torch.bool, device=images.device)
            for i, window in enumerate(masks[first:last]):
                if window is not None:
                    keep[:, i, window[0] : window[0] + self.patch, window[1] : window[1] + self.patch] = False
            values.append(game.masked_values(keep))
        drops = values[0][:, :1] - torch.cat(values, dim=1)[:, 1:]  # (B, windows): f(x) - f(x without the window)
        for i, (top, left) in enumerate(windows):
            total[:, top : top + self.patch, left : left + self.patch] += drops[:, i, None, None]
            covered[top : top + self.patch, left : left + self.patch] += 1
        pixel_map = total / covered.clamp_min(1)
        scores = pixel_scores(pixel_map, regions)
        return self.attribution(
            game,
            scores,
            pixel_map=pixel_map,
            extra={"windows": torch.full((batch,), len(windows))},
        )
