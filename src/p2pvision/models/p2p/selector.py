"""The P2P selector: a dense per-pixel network whose head is conditioned on the sparsity budget tau.

The backbone (any timm model that supports ``forward_intermediates``, pruned after the deepest level used)
runs once per image; its multi-scale features are fused into one map. The head turns that map and tau into
``1 + embedding_dim`` channels per pixel: a selection logit and an embedding. Only the head depends on tau,
so searching over tau at inference re-runs the head alone.

tau conditioning: the reference adds tau as a scalar input to the final 1x1 convolutions, which a prototype
found to have almost no effect on the masks. Here tau enters three ways: as an extra input channel of both
head convolutions and through a FiLM layer (per-channel scale and shift computed from tau) between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.errors import ConfigError
from p2pvision.models.backbones import create_classifier


@runtime_checkable
class _IntermediatesNetwork(Protocol):
    """What the selector needs of a timm network: its levels' ``feature_info`` and their intermediate outputs."""

    feature_info: Sequence[Mapping[str, Any]]

    def prune_intermediate_layers(
        self, indices: list[int], prune_norm: bool = ..., prune_head: bool = ...
    ) -> list[int]: ...

    def forward_intermediates(self, x: Tensor, indices: list[int], *, intermediates_only: bool) -> list[Tensor]: ...


class TauFiLM(nn.Module):
    """Per-channel affine modulation ``x * (1 + gamma(tau)) + beta(tau)`` from a small MLP on tau."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden, last = nn.Linear(1, channels), nn.Linear(channels, 2 * channels)
        self.mlp = nn.Sequential(hidden, nn.ReLU(inplace=True), last)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: Tensor, tau: Tensor) -> Tensor:
        gamma, beta = self.mlp(tau[:, None]).chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


def _with_tau(x: Tensor, tau: Tensor) -> Tensor:
    return torch.cat([x, tau.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1)


class Selector(nn.Module):
    """Backbone features -> (tau-conditioned head) -> per-pixel (logit, embedding) at the image resolution."""

    def __init__(
        self,
        backbone: str,
        weights: str | None,
        levels: Sequence[int],
        head_channels: int = 64,
        embedding_dim: int = 3,
        initial_keep_logit: float = 0.0,
    ) -> None:
        super().__init__()
        self.backbone = create_classifier(backbone, weights=weights)
        network = self.backbone.model
        if not isinstance(network, _IntermediatesNetwork):
            raise ConfigError(f"selector backbone '{backbone}' is not a timm model with forward_intermediates")
        self.levels = list(levels)
        network.prune_intermediate_layers(self.levels, prune_head=True)
        channels = [info["num_chs"] for info in network.feature_info]
        self.lateral = nn.ModuleList(nn.Conv2d(channels[level], head_channels, 1) for level in self.levels)
        self.conv = nn.Sequential(
            nn.Conv2d(head_channels + 1, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.film = TauFiLM(head_channels)
        self.out = nn.Conv2d(head_channels + 1, 1 + embedding_dim, 1)
        if self.out.bias is None:  # nn.Conv2d has a bias unless built with bias=False
            raise RuntimeError("the selector's output convolution needs a bias for initial_keep_logit")
        with torch.no_grad():
            self.out.bias[0] = initial_keep_logit

    def features(self, images: Tensor) -> Tensor:
        """Fused backbone features (B, C, h, w) at the finest level used; independent of tau."""
        network = cast(_IntermediatesNetwork, self.backbone.model)  # checked when the selector was built
        maps = network.forward_intermediates(
            self.backbone.normalize(images), indices=self.levels, intermediates_only=True
        )
        size = maps[0].shape[-2:]
        fused = self.lateral[0](maps[0])
        for lateral, feature in zip(self.lateral[1:], maps[1:]):
            fused = fused + F.interpolate(lateral(feature), size=size, mode="bilinear", align_corners=False)
        return fused

    def head(self, features: Tensor, tau: Tensor, size: tuple[int, int]) -> Tensor:
        """Per-pixel outputs (B, 1 + embedding_dim, H, W) for budgets ``tau`` (B,)."""
        hidden = self.film(self.conv(_with_tau(features, tau)), tau)
        out = self.out(_with_tau(torch.relu(hidden), tau))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
