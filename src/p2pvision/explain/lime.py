"""LIME for images (Ribeiro et al. 2016), as in the ``lime`` package's image explainer and Agarwal & Nguyen.

Written on the region game rather than with ``lime``/Captum's ``Lime``: those explain one image at a time with a
fixed baseline (``lime`` fills with the superpixel mean or a colour), while here any removal (including
inpainting: LIME-G) applies and the samples of all images run through one chunked, cost-counted game. The
regression is scikit-learn's ``Ridge``, as in ``lime``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Ridge
from torch import Tensor, nn

from p2pvision.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer, check_positive
from p2pvision.regions import Partitioner
from p2pvision.removal import Removal, TokenDropping


@EXPLAINERS.register()
class LIME(PerturbationExplainer):
    """Superpixels switched on/off at random (each with probability 1/2; the first sample keeps all), weighted by
    ``sqrt(exp(-d^2 / width^2))`` with ``d`` the cosine distance to the all-on sample, and a ridge regression
    (``alpha``) of the target probability on the on/off pattern; the scores are its coefficients.

    Defaults follow Agarwal & Nguyen: SLIC with 50 segments and compactness 30 (their sigma 3 smoothing is not a
    parameter of this project's SLIC), kernel width 0.25, but 200 samples; their 500 are the ``paper`` preset.
    Cost: ``num_samples`` evaluations per image, and one for the target.
    """

    name = "lime"
    default_value = "prob"
    default_partition = {"name": "slic", "n_segments": 50, "compactness": 30.0}
    presets = {"paper": {"num_samples": 500, "partition": {"name": "slic", "n_segments": 50, "compactness": 30.0}}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        num_samples: PositiveInt = 200,
        kernel_width: PositiveFloat = 0.25,
        alpha: NonNegativeFloat = 1.0,
        seed: NonNegativeInt = 0,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.num_samples = check_positive("num_samples", num_samples)
        self.kernel_width = check_positive("kernel_width", kernel_width, float)
        self.alpha = float(alpha)
        self.seed = int(seed)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        return self.num_samples + 1

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, slots = game.num_images, game.num_players
        players = game.players.cpu()
        coalitions = torch.zeros(batch, self.num_samples, slots, dtype=torch.bool)
        for b in range(batch):  # each image draws from its own generator: its samples do not depend on its batch
            own = int(players[b].nonzero().max()) + 1 if players[b].any() else 0
            generator = torch.Generator().manual_seed(self.seed)
            coalitions[b, :, :own] = torch.rand(self.num_samples, own, generator=generator) < 0.5
        coalitions &= players.unsqueeze(1)
        coalitions[:, 0] = players
        values = game(coalitions.to(images.device)).double().cpu().numpy()
        scores = torch.zeros(batch, slots)
        intercepts = torch.zeros(batch)
        for b in range(batch):
            ids = players[b].nonzero().squeeze(1)
            z = coalitions[b][:, ids].double().numpy()
            on = z.sum(axis=1)
            cosine = np.sqrt(on / max(len(ids), 1))  # cosine similarity of a 0/1 pattern with the all-on pattern
            distance = 1.0 - cosine
            weights = np.sqrt(np.exp(-(distance**2) / self.kernel_width**2))
            fit = Ridge(alpha=self.alpha, fit_intercept=True).fit(z, values[b], sample_weight=weights)
            scores[b, ids] = torch.from_numpy(fit.coef_).float()
            intercepts[b] = float(fit.intercept_)
        scores = scores.to(images.device)
        return self.attribution(
            game,
            scores,
            extra={"intercept": intercepts},
        )
