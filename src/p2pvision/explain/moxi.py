"""MoXI (Sumiyasu, Kawamoto, Kera, CVPR 2024): greedy insertion/deletion of players by their Shapley value and
interaction with the players already chosen, and MoXI(-), the one-shot ranking by self-context Shapley values.

Written on the region game rather than taken from the reference code, which evaluates every player at every step
(~|N|^2 model evaluations): here each step evaluates only the remaining candidates, for all images of the batch
at once, so a full order costs |N|(|N|+1)/2 evaluations, and early stopping ends an image's search as soon as
the model's top-1 class returns (insertion) or flips (deletion), which leaves the chosen prefix unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from p2pvision.config import PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import EXPLAINERS, Attribution, PerturbationExplainer
from p2pvision.regions import Partitioner
from p2pvision.removal import Removal, TokenDropping

MODES = ("insertion", "deletion")


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"MoXI mode must be one of {MODES}, got {mode!r}")
    return mode


@EXPLAINERS.register()
class MoXI(PerturbationExplainer):
    """Greedy MoXI order of players.

    Insertion: start from nothing visible and add, at each step, the player ``b`` maximising
    ``f(S ∪ {b})`` (= the self-context Shapley value of ``b`` plus its interaction with ``S``; the first pick is
    ``argmax f({b}) - f(∅)``). Deletion: start from everything and remove the player minimising ``f(N \\ (S ∪ {b}))``.

    ``order`` is the chosen sequence. ``scores`` follow MoXI's heatmap: with ``L`` players ordered (all of them,
    or ``count`` with ``early_stop``), the i-th gets ``L - i``, the rest 0. ``extra``: ``count`` (B,), the step at
    which the model's top-1 class first equalled the target (insertion) or first differed from it (deletion),
    -1 if never; ``curve`` (B,K), the value after each step.

    Cost: 1 + |N|(|N|+1)/2 evaluations per image for a full order (fewer with ``early_stop``). Defaults: a 7 x 7
    grid (1,226 evaluations at most) with early stopping; the ``paper`` preset: the full order on 14 x 14 patches
    (19,307 evaluations).
    """

    name = "moxi"
    default_partition = {"name": "grid", "grid": 7}
    presets = {"paper": {"early_stop": False, "partition": {"name": "grid", "grid": 14}}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        mode: str = "insertion",
        early_stop: bool = True,
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.mode = _check_mode(mode)
        self.early_stop = bool(early_stop)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        """The target's pass and |N| + (|N| - 1) + ... + 1 candidates; an upper bound with ``early_stop``."""
        return 1 + num_players * (num_players + 1) // 2

    @property
    def stops_early(self) -> bool:
        return self.early_stop

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        batch, players = game.num_images, game.num_players
        device = images.device
        insertion = self.mode == "insertion"
        chosen = torch.zeros(batch, players, dtype=torch.bool, device=device)
        order = torch.full((batch, players), -1, dtype=torch.int64, device=device)
        curve = torch.full((batch, players), float("nan"), device=device)
        count = torch.full((batch,), -1, dtype=torch.int64, device=device)
        active = game.players.any(dim=1)
        single = torch.eye(players, dtype=torch.bool, device=device).unsqueeze(0)
        rows = torch.arange(batch, device=device)
        for step in range(players):
            candidates = game.players & ~chosen & active.unsqueeze(1)
            if not candidates.any():
                break
            trial = chosen.unsqueeze(1) | single  # coalition s: the chosen players and player s
            coalitions = trial if insertion else game.players.unsqueeze(1) & ~trial
            values, predictions = game.evaluate(coalitions, valid=candidates)
            gain = (values if insertion else -values).masked_fill(~candidates, float("-inf"))
            best = gain.argmax(dim=1)
            moving = candidates.any(dim=1)
            order[moving, step] = best[moving]
            chosen[rows[moving], best[moving]] = True
            curve[moving, step] = values[rows, best][moving]
            predicted = predictions[rows, best]
            reached = (predicted == game.target) if insertion else (predicted != game.target)
            first = moving & reached & (count < 0)
            count[first] = step + 1
            if self.early_stop:
                active &= ~first
        ranked = order >= 0
        length = ranked.sum(dim=1, keepdim=True)
        rank_value = (length - torch.arange(players, device=device)).to(torch.float32).masked_fill(~ranked, 0.0)
        scores = torch.zeros(batch, players + 1, device=device)  # unranked (-1) entries go to the spare column
        scores.scatter_(1, torch.where(ranked, order, players), rank_value)
        scores = scores[:, :players]
        return Attribution(
            scores=scores,
            target=game.target,
            predicted=game.predicted(),
            order=order,
            extra={"count": count, "curve": curve},
            **self.counters(game),
        )


@EXPLAINERS.register()
class MoXIMinus(PerturbationExplainer):
    """MoXI(-): rank players once by their self-context Shapley value ``f({b}) - f(∅)`` (insertion) or their
    full-context one ``f(N) - f(N \\ {b})`` (deletion), ignoring interactions; |N| + 1 evaluations, and one for the
    target (|N| + 2 per image). Default and ``paper`` preset: 14 x 14 patches."""

    name = "moxi_minus"
    presets = {"paper": {"partition": {"name": "grid", "grid": 14}}}

    def __init__(
        self,
        model: nn.Module,
        removal: Removal | TokenDropping | str = "mean",
        partitioner: Partitioner | None = None,
        mode: str = "insertion",
        value: str | None = None,
        batch_size: PositiveInt = 64,
    ) -> None:
        super().__init__(model, removal, partitioner, value, batch_size)
        self.mode = _check_mode(mode)

    def planned_evaluations(self, num_players: int, height: int, width: int) -> int:
        return num_players + 2

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        game = self.game(images, regions, target)
        players = game.num_players
        single = torch.eye(players, dtype=torch.bool, device=images.device).expand(game.num_images, -1, -1)
        base = torch.zeros(game.num_images, 1, players, dtype=torch.bool, device=images.device)
        if self.mode == "insertion":
            coalitions = torch.cat([base, single], dim=1)
        else:
            full = game.players.unsqueeze(1)
            coalitions = torch.cat([full, full & ~single], dim=1)
        valid = torch.cat([torch.ones_like(base[:, :, 0]), game.players], dim=1)
        values = game(coalitions, valid)
        reference, each = values[:, :1], values[:, 1:]
        scores = (each - reference) if self.mode == "insertion" else (reference - each)
        scores = scores.nan_to_num(0.0)
        return self.attribution(
            game,
            scores,
        )
