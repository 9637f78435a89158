"""The region game: known values on a model whose output is a sum over visible pixels, chunking invariance,
evaluation counting, value types, pixel masks with gradients, and token dropping through the game."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.game import RegionGame, class_values
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import make_partitioner, partition_batch, region_to_pixel
from p2pvision.removal import BlackFill, TeleaInpaint, TokenDropping


class VisibleSum(nn.Module):
    """Two classes: logit 0 is 0, logit 1 is the sum of the red channel (black fill makes removed pixels 0)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        red = images[:, 0].sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(red), red], dim=1)


def setup(batch: int = 2, size: int = 8, grid: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(batch, 3, size, size)
    regions = partition_batch(images, make_partitioner("grid", grid=grid))
    return images, regions


def all_coalitions(batch: int, players: int) -> torch.Tensor:
    rows = torch.tensor(list(itertools.product([False, True], repeat=players)))
    return rows.unsqueeze(0).expand(batch, -1, -1).clone()


def test_values_equal_the_sum_over_kept_regions() -> None:
    images, regions = setup()
    game = RegionGame(VisibleSum(), images, regions, BlackFill(), target=1, value="logit")
    coalitions = all_coalitions(2, 4)
    values = game(coalitions)
    red = images[:, 0]
    for b, s in itertools.product(range(2), range(16)):
        kept = coalitions[b, s][regions[b]]
        assert values[b, s] == pytest.approx(float(red[b][kept].sum()), abs=1e-5)
    assert game.evaluations == 2 * 16
    assert game.num_players == 4 and game.players.all()


def test_chunking_gives_identical_values_and_counts_every_image() -> None:
    images, regions = setup(batch=2)
    model = create_classifier("test_resnet").eval()
    coalitions = torch.rand(2, 5, 4) > 0.5
    results = []
    for batch_size in (1, 4, 64):
        game = RegionGame(model, images, regions, BlackFill(), batch_size=batch_size)
        assert game.evaluations == 0  # the target is learnt in the first forward pass
        results.append(game(coalitions))
        assert game.evaluations == 2 + 10
        with torch.no_grad():
            assert torch.equal(game.target, model(images).argmax(1))
    # The same masked images in other batch compositions: equal up to the CPU kernels' batch-size-dependent
    # summation order (~1e-6); exactly equal for a model without such kernels.
    assert torch.allclose(results[0], results[1], atol=1e-5, rtol=0)
    assert torch.allclose(results[0], results[2], atol=1e-5, rtol=0)
    exact = [RegionGame(VisibleSum(), images, regions, BlackFill(), target=1, batch_size=n)(coalitions) for n in (1, 5)]
    assert torch.equal(exact[0], exact[1])


class RecordedSum(VisibleSum):
    """VisibleSum that records the size of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.passes.append(images.shape[0])
        return super().forward(images)


def test_forward_passes_are_nearly_equal_and_carry_the_target_pass() -> None:
    images, regions = setup(batch=1, size=28, grid=14)
    coalitions = torch.rand(1, 197, 196, generator=torch.Generator().manual_seed(0)) < 0.5
    model = RecordedSum()
    given = RegionGame(model, images, regions, BlackFill(), target=1, value="logit")
    values = given(coalitions)
    assert model.passes == [49, 49, 49, 50] and given.evaluations == 197  # not 64, 64, 64, 5
    model.passes.clear()
    default = RegionGame(model, images, regions, BlackFill(), value="logit")
    assert model.passes == [] and default.evaluations == 0
    assert torch.equal(default(coalitions), values)  # the full image's top-1 class is 1 (a positive red sum)
    assert model.passes == [49, 50, 49, 50] and default.evaluations == 1 + 197  # the target in the first pass
    assert default.target.tolist() == [1] and default.predicted().tolist() == [1] and default.evaluations == 198
    model.passes.clear()
    read_first = RegionGame(model, images, regions, BlackFill(), value="logit")
    assert read_first.target.tolist() == [1] and model.passes == [1]  # read before any evaluation: its own pass
    read_first(coalitions)
    assert model.passes == [1, 49, 49, 49, 50]
    model.passes.clear()
    many = torch.rand(3, 3, 8, 8)
    game = RegionGame(model, many, partition_batch(many, make_partitioner("grid", grid=2)), BlackFill(), batch_size=4)
    game(torch.ones(3, 2, 4, dtype=torch.bool))
    assert model.passes == [3, 3, 3]  # the 3 full images would fill a pass of 4: their own pass, then 6 in 2


def test_valid_mask_skips_padding() -> None:
    images, regions = setup()
    game = RegionGame(VisibleSum(), images, regions, BlackFill(), target=1)
    valid = torch.tensor([[True, False, True], [False, False, True]])
    values, predictions = game.evaluate(torch.ones(2, 3, 4, dtype=torch.bool), valid)
    assert game.evaluations == 3
    assert torch.isnan(values[~valid]).all() and not torch.isnan(values[valid]).any()
    assert (predictions[~valid] == -1).all() and (predictions[valid] == 1).all()


def test_value_types_match_their_definitions() -> None:
    logits = torch.tensor([[2.0, 1.0, -1.0], [0.0, 3.0, 0.5]])
    target = torch.tensor([0, 2])
    log_p = torch.log_softmax(logits, dim=1)[[0, 1], target]
    assert torch.allclose(class_values(logits, target, "log_prob"), log_p)
    assert torch.allclose(class_values(logits, target, "prob"), log_p.exp())
    assert torch.equal(class_values(logits, target, "logit"), torch.tensor([2.0, 0.5]))
    expected = torch.tensor(
        [2.0 - torch.logsumexp(torch.tensor([1.0, -1.0]), 0), 0.5 - torch.logsumexp(logits[1, :2], 0)]
    )
    assert torch.allclose(class_values(logits, target, "log_odds"), expected)
    with pytest.raises(ConfigError):
        class_values(logits, target, "odds")


def test_default_target_is_the_top1_class_on_the_full_image() -> None:
    images, regions = setup()
    model = create_classifier("test_resnet").eval()
    game = RegionGame(model, images, regions, BlackFill())
    with torch.no_grad():
        assert torch.equal(game.target, model(images).argmax(1))
    assert torch.equal(RegionGame(model, images, regions, BlackFill(), target=torch.tensor([3, 4])).target,
                       torch.tensor([3, 4]))  # fmt: skip


def test_masked_values_equal_coalition_values_and_carry_gradients() -> None:
    images, regions = setup()
    model = create_classifier("test_resnet").eval()
    coalitions = torch.rand(2, 5, 4) > 0.5
    game = RegionGame(model, images, regions, TeleaInpaint(), target=1, batch_size=3)
    by_coalition = game(coalitions)
    by_mask = game.masked_values(region_to_pixel(coalitions, regions))
    assert torch.equal(by_coalition, by_mask)
    soft = torch.rand(2, 1, 8, 8, requires_grad=True)
    values = RegionGame(model, images, regions, BlackFill(), target=1).masked_values(soft, grad=True)
    values.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_token_dropping_through_the_game() -> None:
    model = create_classifier("test_vit", img_size=64).eval()
    images = torch.rand(2, 3, 64, 64)
    regions = partition_batch(images, make_partitioner("grid", grid=4))
    game = RegionGame(model, images, regions, TokenDropping(), target=0, value="logit")
    coalitions = torch.rand(2, 3, 16) > 0.3
    keep = region_to_pixel(coalitions, regions)
    with torch.no_grad():
        expected = torch.stack([TokenDropping().logits(model, images, keep[:, s])[:, 0] for s in range(3)], dim=1)
    assert torch.allclose(game(coalitions), expected, atol=1e-5)
    with pytest.raises(ConfigError):
        game.compose(torch.tensor([0]), keep[:1, 0])


def test_rejects_bad_shapes() -> None:
    images, regions = setup()
    game = RegionGame(VisibleSum(), images, regions, BlackFill(), target=1)
    with pytest.raises(ValueError, match="coalitions"):
        game(torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="regions"):
        RegionGame(VisibleSum(), images, regions[:1], BlackFill())
    with pytest.raises(ConfigError):
        RegionGame(VisibleSum(), images, regions, BlackFill(), batch_size=0)
