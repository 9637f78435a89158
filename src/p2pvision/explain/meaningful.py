"""Meaningful perturbation (MP; Fong & Vedaldi 2017) with any removal: blur (MP) or an inpainter (MP-G).

Written here because no maintained library implements it (Captum and pytorch-grad-cam do not); the images of a
batch are optimised together (the loss is a sum over images and Adam is elementwise, so this equals separate
runs) and every forward+backward pass goes through the region game, which counts it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer, check_positive, pixel_scores
from p2pvision.regions import Partitioner
from p2pvision.removal import BlurFill, Removal, TokenDropping


def total_variation(masks: Tensor, beta: float) -> Tensor:
    """Per-mask TV_beta: sum of |vertical and horizontal neighbour differences|^beta, (B,h,w) -> (B,)."""
    rows = (masks[:, 1:, :] - masks[:, :-1, :]).abs().pow(beta).sum(dim=(1, 2))
    cols = (masks[:, :, 1:] - masks[:, :, :-1]).abs().pow(beta).sum(dim=(1, 2))
    return rows + cols


@EXPLAINERS.register(aliases=("mp",))
class MeaningfulPerturbation(PerturbationExplainer):
    """Learn a low-resolution keep-mask ``m`` (``mask_size``², upsampled bilinearly) that removes as little as
    possible while making the target probability small:

    ``loss = l1 * |1 - m|_1 + tv * TV_beta(m) + p_target(x * m + fill * (1 - m))``, Adam (``lr``) for ``steps``
    steps from ``m = 1``, clamped to [0, 1], with the composite shifted by up to ``jitter`` pixels each step.
    Hole-dependent fills (inpainting) are recomputed every step on ``m < 0.5`` and treated as constants.
    The attribution is ``1 - m``. Defaults follow Agarwal & Nguyen (28², lr 0.1, l1 1e-4, tv 1e-2, beta 3, jitter
    4, blur sigma 10) but with 100 steps; their 300 are the ``paper`` preset. Cost: ``steps`` forward+backward
    evaluations per image, and one forward pass for the target.
    """

    name = "meaningful_perturbation"
    default_value = "prob"
    presets = {"paper": {"steps": 300}}
    backward = True

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | str | None = None,
        partitioner: Partitioner | None = None,
        mask_size: PositiveInt = 28,
        steps: PositiveInt = 100,
        lr: PositiveFloat = 0.1,
        l1: NonNegativeFloat = 1e-4,
        tv: NonNegativeFloat = 1e-2,
        tv_beta: PositiveFloat = 3.0,
        jitter: NonNegativeInt = 4,
        seed: NonNegativeInt = 0,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, BlurFill(10.0) if removal is None else removal, partitioner, value, batch_size)
        if isinstance(self.removal, TokenDropping):
            raise ConfigError("meaningful perturbation blends images with a fill; token dropping has no image")
        self.mask_size = check_positive("mask_size", mask_size)
        self.steps = check_positive("steps", steps)
        self.lr = check_positive("lr", lr, float)
        self.l1, self.tv, self.tv_beta = float(l1), float(tv), float(tv_beta)
        if jitter < 0:
            raise ConfigError(f"jitter must be >= 0, got {jitter!r}")
        self.jitter = int(jitter)
        self.seed = int(seed)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        return self.steps + 1

    def probe_size(self, planned: int) -> int:
        """One image: every step is one forward+backward pass of the explained images."""
        return 1

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, _, height, width = images.shape
        generator = torch.Generator().manual_seed(self.seed)
        index = torch.arange(batch, device=images.device)
        mask = torch.ones(batch, self.mask_size, self.mask_size, device=images.device, requires_grad=True)
        optimiser = torch.optim.Adam([mask], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                keep = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)
                composite = game.compose(index, keep)
                if self.jitter:
                    top, left = torch.randint(0, self.jitter + 1, (2,), generator=generator).tolist()
                    padded = F.pad(composite, (self.jitter,) * 4, mode="replicate")
                    composite = padded[:, :, top : top + height, left : left + width]
                values, _ = game.values_of_images(composite, index)
                loss = (
                    self.l1 * (1 - mask).abs().sum(dim=(1, 2)) + self.tv * total_variation(mask, self.tv_beta) + values
                ).sum()
                (mask.grad,) = torch.autograd.grad(loss, mask)  # no gradients for the model's parameters
                optimiser.step()
                with torch.no_grad():
                    mask.clamp_(0, 1)
        with torch.no_grad():
            keep = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)
        pixel_map = 1 - keep
        scores = pixel_scores(pixel_map, regions)
        return self.attribution(
            game,
            scores,
            pixel_map=pixel_map,
            extra={"mask": mask.detach()},
        )
