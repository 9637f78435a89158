"""Attention rollout (Abnar & Zuidema 2020) for timm ViTs.

Written here because neither Captum nor pytorch-grad-cam implements it. The attention probabilities are read
from each block's ``attn_drop`` input by switching the blocks to timm's unfused attention for one batched
forward pass (the fused kernel never materialises them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, cast

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from p2pvision.classifier import capture
from p2pvision.config import PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import (
    EXPLAINERS,
    Attribution,
    Explainer,
    check_positive,
    order_from_scores,
    pixel_scores,
    present_players,
)
from p2pvision.regions import Partitioner
from p2pvision.removal.tokens import vision_transformer

HEAD_FUSIONS = ("mean", "max", "min")


class _FusedSwitch(Protocol):
    """timm's attention module: ``fused_attn`` switches the fused kernel on and off."""

    fused_attn: bool


@contextlib.contextmanager
def recorded_attention(vit: VisionTransformer) -> Iterator[list[Tensor]]:
    """Collect every block's attention probabilities (B,heads,T,T) during forward passes inside the context."""
    modules = [block.attn for block in vit.blocks]
    for module in modules:
        if not hasattr(module, "attn_drop") or not hasattr(module, "fused_attn"):
            raise ConfigError(f"attention rollout needs timm's standard attention, got {type(module).__name__}")
    switches = cast(list[_FusedSwitch], modules)  # checked just above
    fused = [attention.fused_attn for attention in switches]
    layers = [f"blocks.{index}.attn.attn_drop" for index in range(len(vit.blocks))]
    attentions: list[Tensor] = []
    try:
        for attention in switches:
            attention.fused_attn = False  # the fused kernel never materialises the attention probabilities
        with capture(vit, layers, inputs=True) as records:
            yield attentions
        attentions.extend(tensor for passes in zip(*(records[name] for name in layers)) for tensor in passes)
    finally:
        for attention, flag in zip(switches, fused):
            attention.fused_attn = flag


def rollout(attentions: list[Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0) -> Tensor:
    """Rolled-out attention (B,T,T): product over layers of ``(A + I) / 2`` with rows renormalised.

    ``A`` fuses the heads (mean, max or min); ``discard_ratio`` zeroes that share of each row's smallest
    weights (never the class-token column), as in common rollout implementations.
    """
    result = None
    for attention in attentions:
        if head_fusion == "mean":
            layer = attention.mean(dim=1)
        else:
            layer = attention.amax(dim=1) if head_fusion == "max" else attention.amin(dim=1)
        if discard_ratio > 0:
            tokens = layer.shape[-1]
            drop = int(tokens * discard_ratio)
            if drop:
                smallest = layer[:, :, 1:].topk(drop, dim=-1, largest=False).indices + 1
                layer = layer.scatter(2, smallest, 0.0)
        eye = torch.eye(layer.shape[-1], device=layer.device, dtype=layer.dtype)
        layer = (layer + eye) / 2
        layer = layer / layer.sum(dim=-1, keepdim=True)
        result = layer if result is None else layer @ result
    if result is None:
        raise ConfigError("the ViT has no attention blocks")
    return result


@EXPLAINERS.register()
class AttentionRollout(Explainer):
    """Attention rollout of a timm ViT: the class token's row of the rolled-out attention over the patch tokens,
    one value per patch (shown per patch on the image). Class-agnostic: ``target`` is only reported.
    Cost: one forward pass per image."""

    name = "rollout"

    def __init__(
        self,
        model: nn.Module,
        partitioner: Partitioner | None = None,
        head_fusion: str = "mean",
        discard_ratio: float = 0.0,
        batch_size: PositiveInt = 32,
    ) -> None:
        super().__init__(model, partitioner)
        vision_transformer(self.model)
        if head_fusion not in HEAD_FUSIONS:
            raise ConfigError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        if not 0.0 <= discard_ratio < 1.0:
            raise ConfigError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
        self.head_fusion = head_fusion
        self.discard_ratio = float(discard_ratio)
        self.batch_size = check_positive("batch_size", batch_size)

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        vit = vision_transformer(self.model)
        grid = vit.patch_embed.grid_size
        maps, predictions = [], []
        with torch.no_grad():
            for start in range(0, images.shape[0], self.batch_size):
                index = torch.arange(start, min(start + self.batch_size, images.shape[0]), device=images.device)
                with recorded_attention(vit) as attentions:
                    logits = self.model(images[index], *self.forward_args_for(index, images.shape[0]))
                self.advance(len(index))
                rolled = rollout(attentions, self.head_fusion, self.discard_ratio)
                patches = rolled[:, 0, vit.num_prefix_tokens :].reshape(-1, 1, grid[0], grid[1])
                maps.append(F.interpolate(patches, size=images.shape[2:], mode="nearest-exact").squeeze(1))
                predictions.append(logits.argmax(dim=1))
        pixel_map = torch.cat(maps)
        chosen = predicted = torch.cat(predictions)
        if target is not None:
            chosen = torch.as_tensor(target, dtype=torch.int64, device=images.device).expand(len(chosen)).clone()
        scores = pixel_scores(pixel_map, regions)
        return Attribution(
            scores=scores,
            target=chosen,
            predicted=predicted,
            evaluations=images.shape[0],
            order=order_from_scores(scores, present_players(regions)),
            pixel_map=pixel_map,
        )
