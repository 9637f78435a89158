"""MoXI and MoXI(-) on a redundancy game (the spec's SET-SUM idea) where they must choose differently, their
evaluation counts, early stopping and the heat-map scores."""

from __future__ import annotations

import torch
from torch import nn

from p2pvision.explain import MoXI, MoXIMinus
from p2pvision.game import RegionGame
from p2pvision.regions import GridPartitioner, partition_batch, region_to_pixel
from p2pvision.removal import BlackFill


class RedundantRegions(nn.Module):
    """2x2 grid of players visible (1) or removed (0, black fill). Cells 0 and 1 carry the same evidence
    (only the larger counts: a set), cell 2 other evidence, cell 3 a little (a sum):
    logit 1 = 2 max(m0, m1) + 1.5 m2 + 0.2 m3, logit 0 = 2.5 (so class 1 needs cell 2 and one of 0/1)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        m = nn.functional.adaptive_avg_pool2d(images[:, :1], 2).flatten(1)
        logit = 2 * torch.maximum(m[:, 0], m[:, 1]) + 1.5 * m[:, 2] + 0.2 * m[:, 3]
        return torch.stack([torch.full_like(logit, 2.5), logit], dim=1)


def setup() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.ones(1, 3, 8, 8)
    return images, partition_batch(images, GridPartitioner(2))


def patches_needed(order: torch.Tensor, images: torch.Tensor, regions: torch.Tensor) -> int:
    """Smallest k such that the first k players of ``order`` make class 1 the top-1 class."""
    model = RedundantRegions()
    for k in range(1, order.shape[1] + 1):
        coalition = torch.zeros(1, 4, dtype=torch.bool)
        coalition[0, order[0, :k]] = True
        if model(images * region_to_pixel(coalition, regions).unsqueeze(1)).argmax(1).item() == 1:
            return k
    return -1


def test_moxi_skips_the_redundant_player_and_moxi_minus_does_not() -> None:
    images, regions = setup()
    moxi = MoXI(RedundantRegions(), BlackFill(), GridPartitioner(2), early_stop=False).explain(images, regions=regions)
    minus = MoXIMinus(RedundantRegions(), BlackFill(), GridPartitioner(2)).explain(images, regions=regions)
    assert moxi.target.tolist() == [1]
    assert moxi.order[0].tolist() == [0, 2, 3, 1]
    assert minus.order[0].tolist() == [0, 1, 2, 3]
    assert patches_needed(moxi.order, images, regions) == 2 == moxi.extras["count"].item()
    assert patches_needed(minus.order, images, regions) == 3


def test_deletion_removes_the_unique_evidence_first() -> None:
    images, regions = setup()
    moxi = MoXI(RedundantRegions(), BlackFill(), GridPartitioner(2), mode="deletion", early_stop=False).explain(
        images, regions=regions
    )
    minus = MoXIMinus(RedundantRegions(), BlackFill(), GridPartitioner(2), mode="deletion").explain(
        images, regions=regions
    )
    assert moxi.order[0, 0] == 2 and moxi.extras["count"].item() == 1
    assert minus.order[0, :2].tolist() == [2, 3]


def test_moxi_costs_n_n_plus_1_over_2_and_early_stop_keeps_the_prefix() -> None:
    images = torch.rand(2, 3, 16, 16)
    regions = partition_batch(images, GridPartitioner(4))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    with torch.no_grad():
        target = model(images).argmax(1)  # the model's own class: it returns at the latest with all 16 players
    full = MoXI(model, BlackFill(), GridPartitioner(4), early_stop=False).explain(images, target, regions)
    assert full.evaluations.sum() == 2 * 16 * 17 // 2
    assert (full.order >= 0).all() and torch.equal(full.order.sort(1).values, torch.arange(16).expand(2, -1))
    # Scores follow the order: the i-th player gets 16 - i.
    assert torch.equal(full.scores.gather(1, full.order), torch.arange(16, 0, -1).float().expand(2, -1))
    curve = full.extras["curve"]
    game = RegionGame(model, images, regions, BlackFill(), target=target)
    prefixes = torch.zeros(2, 16, 16, dtype=torch.bool)
    for b in range(2):
        for k in range(16):
            prefixes[b, k, full.order[b, : k + 1]] = True
    assert torch.allclose(game(prefixes), curve, atol=1e-5)

    stopped = MoXI(model, BlackFill(), GridPartitioner(4), early_stop=True).explain(images, target, regions)
    count = full.extras["count"]
    assert ((count >= 1) & (count < 16)).all()  # so early stopping saves evaluations
    assert torch.equal(stopped.extras["count"], count)
    for b in range(2):
        n = int(count[b])
        assert torch.equal(stopped.order[b, :n], full.order[b, :n]) and (stopped.order[b, n:] == -1).all()
        assert torch.equal(stopped.scores[b, stopped.order[b, :n]], torch.arange(n, 0, -1).float())
    steps = sum(sum(16 - k for k in range(int(n))) for n in count)
    assert stopped.evaluations.sum() == steps + 2  # and the prediction on each full image (target given)


def test_moxi_minus_scores_are_self_context_shapley_values() -> None:
    images, regions = setup()
    result = MoXIMinus(RedundantRegions(), BlackFill(), GridPartitioner(2), value="logit").explain(images, 1, regions)
    assert torch.allclose(result.scores[0], torch.tensor([2.0, 2.0, 1.5, 0.2]))
    assert result.evaluations.sum() == 5 + 1  # and the prediction on the full image (target given)
