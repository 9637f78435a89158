"""Faithfulness of a region ranking, P2P protocol: keep (insertion) or remove (deletion) the top-ranked regions
up to an area share and check whether the model still predicts what it predicted (agreement).

Insertion keeps the highest-ranked regions whose total area stays below ``t`` of the image (higher agreement
is better); deletion removes top-ranked regions until at least ``t`` is removed (lower agreement is better).
Both run through the shared :class:`~p2pvision.game.RegionGame`, so the removal used is explicit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from p2pvision.game import RegionGame

AREA_SHARES = (0.05, 0.10, 0.20)


def ranked_coalitions(scores: Tensor, areas: Tensor, share: float, mode: str) -> Tensor:
    """Bool coalitions (B,1,K) of kept regions for ``mode`` "insertion" or "deletion" at area ``share``.

    Regions are ranked by ``scores`` (B,K), highest first; empty slots (area 0) never count.
    """
    order = scores.masked_fill(areas <= 0, float("-inf")).argsort(dim=1, descending=True)
    sorted_areas = areas.gather(1, order).double()  # pixel counts: exact sums
    budget = share * areas.double().sum(1, keepdim=True)
    after = sorted_areas.cumsum(1)
    if mode == "insertion":
        chosen_sorted = after < budget  # top regions whose running total stays below the share
    elif mode == "deletion":
        chosen_sorted = (after - sorted_areas) < budget  # removed until at least the share is gone
    else:
        raise ValueError(f"mode must be 'insertion' or 'deletion', got {mode!r}")
    chosen = torch.zeros_like(chosen_sorted).scatter(1, order, chosen_sorted)
    keep = chosen if mode == "insertion" else ~chosen
    return (keep & (areas > 0))[:, None]


def ranking_agreement(
    game: RegionGame, scores: Tensor, reference: Tensor, shares: tuple[float, ...] = AREA_SHARES
) -> dict[str, Tensor]:
    """Per image agreement (B,) with ``reference`` classes for insertion and deletion at each area share."""
    areas = game.areas.to(scores.device, scores.dtype)
    result = {}
    for mode in ("insertion", "deletion"):
        for share in shares:
            coalitions = ranked_coalitions(scores, areas, share, mode)
            _, predicted = game.evaluate(coalitions.to(game.images.device))
            result[f"{mode}@{int(round(share * 100))}"] = (predicted[:, 0].cpu() == reference.cpu()).float()
    return result
