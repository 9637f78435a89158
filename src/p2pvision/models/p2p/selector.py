"""The P2P selector: a dense per-pixel network whose head is conditioned on the sparsity budget tau.

The backbone (any timm model that supports ``forward_intermediates``, pruned after the deepest level used)
runs once per image; its multi-scale features are fused into one map. The head turns that map and tau into
``1 + embedding_dim`` channels per pixel: a selection logit and an embedding. Only the head depends on tau,
so searching over tau at inference re-runs the head alone.

tau conditioning: the reference adds tau as a scalar input to the final 1x1 convolutions, which a prototype
found to have almost no effect on the masks. Here tau enters three ways: as an extra input channel of both
head convolutions and through a FiLM layer (per-channel scale and shift computed from tau) between them
(``conditioning="film"``); ``conditioning="additive"`` builds the reference's head for comparison (tau only at
the last 1x1 convolution: it shifts every region logit by the same amount, so regions are never re-ranked).

Fast tau search (:meth:`Selector.head_cache`, :meth:`Selector.region_head`): in eval mode the head's tau-free work
is done once per image. The tau channel is constant over the pixels, so the 3x3 convolution of (features, tau)
is ``conv(features, 0) + tau * conv(0, 1)``, and BatchNorm with running statistics (an affine map) folds into both
terms; ReLU and FiLM are per pixel; the last 1x1 convolution, the bilinear upsampling to the image and the mean
over each region are all linear with weights summing to one, so they commute. Per-region outputs at any tau are
then ``W P relu(hidden(tau)) + w tau + b`` with ``P`` (B, K, h*w) the region mean of the upsampling, computed once:
each new tau costs a few element-wise operations at feature resolution and one small matrix product instead of a
head at image resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

    def scale_shift(self, tau: Tensor) -> tuple[Tensor, Tensor]:
        """``1 + gamma(tau)`` and ``beta(tau)``, (B, C) each."""
        gamma, beta = self.mlp(tau[:, None]).chunk(2, dim=1)
        return 1 + gamma, beta

    def forward(self, x: Tensor, tau: Tensor) -> Tensor:
        scale, shift = self.scale_shift(tau)
        return x * scale[:, :, None, None] + shift[:, :, None, None]


def _with_tau(x: Tensor, tau: Tensor) -> Tensor:
    return torch.cat([x, tau.view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1)


@dataclass
class HeadCache:
    """The tau-free part of the selector head for a batch of images (see :meth:`Selector.head_cache`)."""

    # channels last, so that per-cell products need no copies: (B, h*w, C), the head's 3x3 convolution of the
    # features with a zero tau channel, then its BatchNorm (running statistics: an affine map per channel)
    conv_features: Tensor
    conv_tau: Tensor  # (1, h*w, C): the same convolution of a constant-one tau channel alone, times BatchNorm's scale
    pooling: Tensor  # (B, K, h*w): the mean over each region of the bilinear upsampling of each feature cell
    present: Tensor  # (B, K): 1 for regions with pixels, 0 for empty slots

    def subset(self, index: Tensor) -> HeadCache:
        """The cache of the images ``index``."""
        conv_features, pooling, present = (tensor.index_select(0, index) for tensor in
                                           (self.conv_features, self.pooling, self.present))  # fmt: skip
        return HeadCache(conv_features, self.conv_tau, pooling, present)


def _upsampling_taps(size: int, source: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """For each of ``size`` output positions, the (at most two) source positions of bilinear upsampling from
    ``source`` positions (``align_corners=False``, as :func:`F.interpolate`) and their weights: (size, 2) each."""
    identity = torch.eye(source, device=device).view(source, 1, source, 1)
    dense = F.interpolate(identity, size=(size, 1), mode="bilinear", align_corners=False)[:, 0, :, 0].T
    weights, indices = dense.topk(min(2, source), dim=1)
    return indices, weights


def region_pooling(regions: Tensor, areas: Tensor, height: int, width: int, chunk: int = 16) -> Tensor:
    """``P`` (B, K, height*width) for region maps ``regions`` (B, H, W) with region areas ``areas`` (B, K):
    ``P[b, k]`` is the mean over region k's pixels of the bilinear upsampling weights of each cell of a ``height x
    width`` map, so that ``P @ x`` equals the region mean of ``x`` upsampled to the image (for any x). Scattered
    from the two taps per axis of every pixel, ``chunk`` images at a time."""
    batch, image_height, image_width = regions.shape
    row_index, row_weight = _upsampling_taps(image_height, height, regions.device)
    col_index, col_weight = _upsampling_taps(image_width, width, regions.device)
    cell = (row_index[:, None, :, None] * width + col_index[None, :, None, :]).flatten(2)  # (H, W, 4)
    weight = (row_weight[:, None, :, None] * col_weight[None, :, None, :]).flatten(2)
    cells, num_regions = height * width, areas.shape[1]
    pooled = torch.zeros(batch, num_regions * cells, device=regions.device)
    for start in range(0, batch, chunk):
        labels = regions[start : start + chunk]
        index = (labels[..., None] * cells + cell).flatten(1)
        pooled[start : start + chunk].scatter_add_(1, index, weight.flatten().expand(len(labels), -1))
    return pooled.view(batch, num_regions, cells) / areas.clamp_min(1).to(pooled.dtype)[..., None]


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
        conditioning: str = "film",
    ) -> None:
        super().__init__()
        if conditioning not in ("film", "additive"):
            raise ConfigError(f"tau conditioning '{conditioning}': use 'film' or 'additive'")
        self.backbone = create_classifier(backbone, weights=weights)
        network = self.backbone.model
        if not isinstance(network, _IntermediatesNetwork):
            raise ConfigError(f"selector backbone '{backbone}' is not a timm model with forward_intermediates")
        self.levels = list(levels)
        network.prune_intermediate_layers(self.levels, prune_head=True)
        channels = [info["num_chs"] for info in network.feature_info]
        self.lateral = nn.ModuleList(nn.Conv2d(channels[level], head_channels, 1) for level in self.levels)
        self.tau_channels = 1 if conditioning == "film" else 0  # tau as an input channel of the 3x3 convolution
        self.conv = nn.Sequential(
            nn.Conv2d(head_channels + self.tau_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.film = TauFiLM(head_channels) if conditioning == "film" else None
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
        hidden = self.conv(_with_tau(features, tau) if self.tau_channels else features)
        hidden = hidden if self.film is None else self.film(hidden, tau)
        out = self.out(_with_tau(torch.relu(hidden), tau))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)

    def head_cache(self, features: Tensor, regions: Tensor, areas: Tensor) -> HeadCache:
        """The tau-free work of the head on ``features`` (B, C, h, w) for region maps ``regions`` (B, H, W) with
        region areas ``areas`` (B, K), done once so that :meth:`region_head` evaluates any tau cheaply (eval mode
        only: BatchNorm must use running stats)."""
        if self.training:
            raise RuntimeError("the cached selector head needs eval mode (BatchNorm with running statistics)")
        convolution = cast(nn.Conv2d, self.conv[0])
        weight = convolution.weight
        channels = features.shape[1]
        conv_features = F.conv2d(features, weight[:, :channels], padding=1)
        ones = features.new_ones(1, 1, *features.shape[2:])
        conv_tau = (F.conv2d(ones, weight[:, channels:], padding=1) if self.tau_channels
                    else features.new_zeros(1, weight.shape[0], *features.shape[2:]))  # fmt: skip
        norm = cast(nn.BatchNorm2d, self.conv[1])
        scale = cast(Tensor, norm.weight) / torch.sqrt(cast(Tensor, norm.running_var) + norm.eps)
        shift = cast(Tensor, norm.bias) - cast(Tensor, norm.running_mean) * scale
        conv_features = torch.addcmul(shift, conv_features.flatten(2).transpose(1, 2), scale).contiguous()
        conv_tau = (conv_tau.flatten(2).transpose(1, 2) * scale).contiguous()
        pooling = region_pooling(regions, areas, *features.shape[2:]).to(features.dtype)
        present = (areas > 0).to(features.dtype)
        return HeadCache(conv_features, conv_tau, pooling, present)

    def region_head(self, cache: HeadCache, tau: Tensor) -> Tensor:
        """Per-region head outputs (B, K, 1 + embedding_dim) at budgets ``tau`` (B,): equal (up to rounding) to the
        region mean of :meth:`head` at the image size; 0 in empty slots."""
        tau = tau.to(cache.conv_features.dtype)
        # channels last and in place: at feature resolution every new tensor of a large batch costs page faults
        hidden = torch.addcmul(cache.conv_features, tau.view(-1, 1, 1), cache.conv_tau).relu_()  # (B, h*w, C)
        if self.film is not None:
            scale, shift = self.film.scale_shift(tau)
            hidden = hidden.mul_(scale[:, None]).add_(shift[:, None]).relu_()
        weight = self.out.weight[:, :, 0, 0]
        # the 1x1 convolution before the region mean (both linear): C -> 1 + embedding_dim channels per cell first
        # makes the product with the pooling matrix several times smaller
        cells = hidden @ weight[:, :-1].T  # (B, h*w, 1 + embedding_dim)
        bias = cast(Tensor, self.out.bias)
        constant = tau[:, None] * weight[:, -1] + bias  # the tau input channel and the bias: same at every pixel
        return (torch.bmm(cache.pooling, cells) + constant[:, None, :]) * cache.present[..., None]
