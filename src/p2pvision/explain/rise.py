"""RISE (Petsiuk et al., 2018): saliency as the mask-weighted mean of the model's score over random smooth masks.

Written on the region game's soft pixel masks rather than with a library's RISE: any removal fills what a mask
hides (the reference multiplies the normalised image, i.e. the ``mean`` fill), and the masked images of all
images go through one chunked, cost-counted game. Masks are drawn once per call from ``seed`` and shared by the
images of a batch, so an image's map does not depend on its batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.config import Fraction, NonNegativeInt, PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer, check_positive, pixel_scores
from p2pvision.regions import Partitioner
from p2pvision.removal import Removal, TokenDropping


@EXPLAINERS.register()
class RISE(PerturbationExplainer):
    """``num_masks`` binary ``cells`` x ``cells`` grids (each cell kept with ``keep_probability``) are upsampled
    bilinearly to ``(cells + 1)`` cell sizes, shifted at random by up to one cell and cropped to the image; the map
    is ``sum_i f(x with mask i) * mask_i / (num_masks * keep_probability)`` with ``f`` the target probability by
    default. Defaults: the paper's 7 x 7 cells and p = 0.5, but 250 masks (its 4000: the ``paper`` preset). Cost:
    ``num_masks`` evaluations per image, and one for the target."""

    name = "rise"
    default_value = "prob"
    presets = {"paper": {"num_masks": 4000}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        num_masks: PositiveInt = 250,
        cells: PositiveInt = 7,
        keep_probability: Fraction = 0.5,
        seed: NonNegativeInt = 0,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.num_masks = check_positive("num_masks", num_masks)
        self.cells = check_positive("cells", cells)
        if not 0 < keep_probability <= 1:
            raise ConfigError(f"keep_probability must be in (0, 1], got {keep_probability!r}")
        self.keep_probability = float(keep_probability)
        self.seed = int(seed)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        return self.num_masks + 1

    def masks(self, height: int, width: int, device: torch.device, chunk: int = 256) -> Iterator[Tensor]:
        """The soft masks in [0, 1], ``chunk`` at a time (n, H, W): the same ones for any chunk size."""
        generator = torch.Generator().manual_seed(self.seed)
        grids = torch.rand(self.num_masks, 1, self.cells, self.cells, generator=generator) < self.keep_probability
        cell_h, cell_w = math.ceil(height / self.cells), math.ceil(width / self.cells)
        shifts = torch.stack([torch.randint(0, cell_h, (self.num_masks,), generator=generator),
                              torch.randint(0, cell_w, (self.num_masks,), generator=generator)], 1)  # fmt: skip
        size = ((self.cells + 1) * cell_h, (self.cells + 1) * cell_w)
        for start in range(0, self.num_masks, chunk):
            up = F.interpolate(grids[start : start + chunk].float().to(device), size=size, mode="bilinear")[:, 0]
            yield torch.stack([m[y : y + height, x : x + width] for m, (y, x) in zip(up, shifts[start:].tolist())])

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, _, height, width = images.shape
        total = torch.zeros(batch, height, width, device=images.device)
        for masks in self.masks(height, width, images.device):
            values = game.masked_values(masks.unsqueeze(0).expand(batch, -1, -1, -1))  # (B, n)
            total += torch.einsum("bn,nhw->bhw", values, masks)
        pixel_map = total / (self.num_masks * self.keep_probability)
        return self.attribution(game, pixel_scores(pixel_map, regions), pixel_map=pixel_map)
