"""Shapley values of the region game: Monte-Carlo permutation sampling and KernelSHAP.

Written on the region game rather than with Captum's ``ShapleyValueSampling``/``KernelShap``: those fill removed
features with a fixed baseline tensor (no inpainting or token dropping) and explain one image at a time, while
here every coalition of every image in the batch goes through one chunked, cost-counted game.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from p2pvision.config import NonNegativeInt, PositiveInt
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer, check_positive
from p2pvision.game import RegionGame
from p2pvision.regions import Partitioner
from p2pvision.removal import Removal, TokenDropping


def with_empty_and_full(game: RegionGame, coalitions: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """``coalitions`` (B,S,K) and ``valid`` (B,S) with the empty and the full coalition put first (B,2+S,K), so that
    all of them go through the game in one evaluation (its forward passes full)."""
    ends = torch.stack([torch.zeros_like(game.players), game.players], dim=1).to(coalitions.device)
    return torch.cat([ends, coalitions], dim=1), torch.cat([valid.new_ones(valid.shape[0], 2), valid], dim=1)


@EXPLAINERS.register()
class ShapleySampling(PerturbationExplainer):
    """Monte-Carlo Shapley values by permutation sampling (Castro et al. 2009).

    Each of ``num_permutations`` random orders of an image's players adds them one by one; a player's estimate is
    its mean marginal contribution. With ``antithetic`` every other order is the reverse of the previous one,
    which lowers the variance. Cost: 2 + num_permutations * (|N| - 1) evaluations per image, and one for the
    target. The estimates always sum to ``f(N) - f(∅)``. Defaults: 4 permutations of a 7 x 7 grid (195
    evaluations); the ``paper`` preset: 200 permutations of 14 x 14 patches (39,003).
    """

    name = "shapley"
    default_partition = {"name": "grid", "grid": 7}
    presets = {"paper": {"num_permutations": 200, "partition": {"name": "grid", "grid": 14}}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        num_permutations: PositiveInt = 4,
        antithetic: bool = True,
        seed: NonNegativeInt = 0,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.num_permutations = check_positive("num_permutations", num_permutations)
        self.antithetic = bool(antithetic)
        self.seed = int(seed)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        return 3 + self.num_permutations * max(num_players - 1, 0)

    def permutations(self, players: Tensor) -> Tensor:
        """Random orders (B,P,K) of each image's players (``players`` (B,K) bool); -1 pads the empty slots. Each
        image draws from its own generator seeded with ``seed``, so its orders do not depend on its batch."""
        batch, slots = players.shape
        result = torch.full((batch, self.num_permutations, slots), -1, dtype=torch.int64)
        for b in range(batch):
            generator = torch.Generator().manual_seed(self.seed)
            ids = players[b].nonzero().squeeze(1).cpu()
            for p in range(self.num_permutations):
                if self.antithetic and p % 2 == 1:
                    result[b, p, : len(ids)] = result[b, p - 1, : len(ids)].flip(0)
                else:
                    result[b, p, : len(ids)] = ids[torch.randperm(len(ids), generator=generator)]
        return result.to(players.device)

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, slots, count = game.num_images, game.num_players, self.num_permutations
        sizes = game.players.sum(dim=1)  # (B,)
        orders = self.permutations(game.players)  # (B,P,K)
        position = torch.full((batch, count, slots + 1), slots, dtype=torch.int64, device=images.device)
        steps = torch.arange(slots, device=images.device).expand(batch, count, -1)
        position.scatter_(2, torch.where(orders >= 0, orders, slots), steps)
        position = position[:, :, :slots]  # (B,P,K): where each player comes in each order
        prefix = torch.arange(1, slots, device=images.device).view(1, 1, -1, 1)
        coalitions = position.unsqueeze(2) < prefix  # (B,P,K-1,K): the first j players, j = 1..K-1
        valid = (prefix.view(1, 1, -1) < sizes.view(-1, 1, 1)).expand(-1, count, -1)
        values = game(*with_empty_and_full(game, coalitions.reshape(batch, -1, slots), valid.reshape(batch, -1)))
        ends, inner = values[:, :2], values[:, 2:].reshape(batch, count, slots - 1)
        empty, full = ends[:, :1, None].expand(-1, count, 1), ends[:, 1:, None]
        chain = torch.cat([empty, inner, full.expand(-1, count, 1)], dim=2)  # (B,P,K+1), value after j players
        j = torch.arange(slots + 1, device=images.device).view(1, 1, -1)
        chain = torch.where(j >= sizes.view(-1, 1, 1), full, chain)
        marginal = chain[:, :, 1:] - chain[:, :, :-1]  # contribution of the j-th player of each order
        phi = torch.zeros(batch, slots + 1, dtype=marginal.dtype, device=images.device)
        phi.scatter_add_(1, torch.where(orders >= 0, orders, slots).flatten(1), marginal.flatten(1))
        scores = phi[:, :slots] / count
        return self.attribution(
            game,
            scores,
        )


def shapley_kernel_size_weights(players: int) -> Tensor:
    """Total Shapley-kernel weight of each coalition size 1..n-1: proportional to (n-1)/(s(n-s))."""
    sizes = torch.arange(1, players, dtype=torch.float64)
    weights = (players - 1) / (sizes * (players - sizes))
    return weights / weights.sum()


@EXPLAINERS.register()
class KernelSHAP(PerturbationExplainer):
    """KernelSHAP (Lundberg & Lee 2017): Shapley values as the solution of a weighted linear regression over
    coalitions, with the efficiency constraint ``sum(phi) = f(N) - f(∅)`` imposed exactly.

    Coalitions are drawn from the Shapley kernel (size s with probability ∝ (n-1)/(s(n-s)), then a uniform subset
    of that size), in complementary pairs. When ``num_samples`` covers all 2^n - 2 proper coalitions (small n) they
    are enumerated with their exact kernel weights and the result is the exact Shapley value.
    Cost: 2 + num_samples (or 2^n - 2) evaluations per image, and one for the target. Defaults: 200 samples of a
    7 x 7 grid; the ``paper`` preset: 2,048 samples of 14 x 14 patches.
    """

    name = "kernel_shap"
    max_enumerated_players = 16
    default_partition = {"name": "grid", "grid": 7}
    presets = {"paper": {"num_samples": 2048, "partition": {"name": "grid", "grid": 14}}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        num_samples: PositiveInt = 200,
        seed: NonNegativeInt = 0,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.num_samples = check_positive("num_samples", num_samples)
        self.seed = int(seed)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        if num_players <= 1:
            return 3
        enumerable = num_players <= self.max_enumerated_players and self.num_samples >= 2**num_players - 2
        return 3 + (2**num_players - 2 if enumerable else self.num_samples)

    def _coalitions(self, players: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Coalitions (S, n) bool over ``players`` and their regression weights (S,) float64."""
        enumerable = players <= self.max_enumerated_players and self.num_samples >= 2**players - 2
        if enumerable:
            rows = torch.tensor(list(itertools.product([False, True], repeat=players)))[1:-1]
            sizes = rows.sum(1).to(torch.float64)
            weights = (players - 1) / (
                torch.tensor([math.comb(players, int(s)) for s in sizes], dtype=torch.float64)
                * sizes
                * (players - sizes)
            )
            return rows, weights / weights.sum()
        half = -(-self.num_samples // 2)
        size_index = torch.multinomial(shapley_kernel_size_weights(players), half, True, generator=generator)
        ranks = torch.rand(half, players, generator=generator).argsort(dim=1).argsort(dim=1)
        drawn = ranks < (size_index + 1).unsqueeze(1)
        rows = torch.cat([drawn, ~drawn])[: self.num_samples]
        return rows, torch.full((len(rows),), 1.0 / len(rows), dtype=torch.float64)

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, slots = game.num_images, game.num_players
        ids: list[Tensor] = []
        samples: list[Tensor] = []
        weights: list[Tensor] = []  # empty for an image with at most one player (its score needs no regression)
        for b in range(batch):  # each image draws from its own generator: its samples do not depend on its batch
            generator = torch.Generator().manual_seed(self.seed)
            ids.append(game.players[b].nonzero().squeeze(1).cpu())
            no_rows = (torch.zeros(0, 0), torch.zeros(0, dtype=torch.float64))
            rows, w = self._coalitions(len(ids[b]), generator) if len(ids[b]) > 1 else no_rows
            samples.append(rows)
            weights.append(w)
        width = max(1, max(len(rows) for rows in samples))
        coalitions = torch.zeros(batch, width, slots, dtype=torch.bool)
        valid = torch.zeros(batch, width, dtype=torch.bool)
        for b, rows in enumerate(samples):
            if len(rows):
                coalitions[b, : len(rows), ids[b]] = rows.bool()
                valid[b, : len(rows)] = True
        values = game(*with_empty_and_full(game, coalitions.to(images.device), valid.to(images.device))).double().cpu()
        ends, values = values[:, :2], values[:, 2:]
        scores = torch.zeros(batch, slots, dtype=torch.float64)
        for b in range(batch):
            total = ends[b, 1] - ends[b, 0]
            if len(ids[b]) == 1:
                scores[b, ids[b]] = total
            elif len(ids[b]) > 1:
                z = samples[b].double()
                y = values[b, : len(z)] - ends[b, 0]
                a = z.T @ (weights[b].unsqueeze(1) * z)
                c = z.T @ (weights[b] * y)
                inverse = torch.linalg.pinv(a)
                ones = torch.ones(len(ids[b]), dtype=torch.float64)
                multiplier = (ones @ inverse @ c - total) / (ones @ inverse @ ones)
                scores[b, ids[b]] = inverse @ (c - multiplier * ones)
        scores = scores.to(images.device, torch.float32)
        return self.attribution(
            game,
            scores,
        )
