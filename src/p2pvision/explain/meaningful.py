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
from p2pvision.removal import BlurFill, Removal, TokenDropping, blend


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
    steps from ``m = init``, clamped to [0, 1], with the composite shifted by up to ``jitter`` pixels each step.
    The attribution is ``1 - m``.

    Hole-dependent fills (inpainting: MP-G) are recomputed every step for the hole of every pixel removed to any
    degree (upsampled ``m < 1``: only wholly kept pixels are known to the inpainter) and treated as constants; the
    composite blends that fill by ``m`` as above. So every partly removed pixel has a gradient ``x - fill``, which a
    fill of the hole ``m < 0.5`` would not give to pixels with ``m`` in [0.5, 1), and MP-G cannot start from
    ``m = 1``: there the hole is empty, the fill equals the image and no gradient reaches the mask. ``init`` (None:
    1 for hole-independent fills, 0.9 for hole-dependent ones, one Adam step of lr 0.1 below 1) starts MP-G with the
    whole image in the hole: the first step sees the fill of an empty image (its ``empty_value``, grey), cells whose
    removal does not lower the target return to 1 and become known, and the inpainter fills what is left from them.
    (The authors' MP-G code starts from a random mask instead.)

    Defaults follow Agarwal & Nguyen (28², lr 0.1, l1 1e-4, tv 1e-2, beta 3, jitter 4, blur sigma 10) but with 100
    steps; their 300 are the ``paper`` preset. Cost: ``steps`` forward+backward evaluations per image, and one
    forward pass for the target.
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
        init: float | None = None,
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
        self.hole_dependent = isinstance(self.removal, Removal) and self.removal.hole_dependent
        if init is not None and not 0 < float(init) <= 1:
            raise ConfigError(f"init must be in (0, 1], got {init!r}")
        self.init = float(init) if init is not None else 0.9 if self.hole_dependent else 1.0

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
        mask = torch.full((batch, self.mask_size, self.mask_size), self.init, device=images.device, requires_grad=True)
        optimiser = torch.optim.Adam([mask], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                keep = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)
                if self.hole_dependent:  # the fill of every pixel removed to any degree, blended by keep
                    composite = blend(game.images, keep, game.compose(index, keep.detach() >= 1 - 1e-6))
                else:
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
