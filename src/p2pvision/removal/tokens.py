"""ViT token dropping: removed patches leave the token sequence instead of being filled (MoXI's default).

A patch token is kept when at least ``threshold`` of its pixels are kept. Position embeddings are added before
tokens are dropped, so every kept token keeps its place; the class (and register) tokens always stay. Images in a
batch may keep different numbers of tokens: the sequences are padded and the padding is hidden from attention
with a key mask, so each image's logits equal those of the ViT run on its kept tokens alone.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from p2pvision.classifier import network_of, normalised
from p2pvision.errors import ConfigError
from p2pvision.removal.base import REMOVALS, check_inputs


def vision_transformer(model: nn.Module) -> VisionTransformer:
    """The timm ViT inside ``model`` (an ImageClassifier or the ViT itself), or a ConfigError."""
    vit = network_of(model)
    if not isinstance(vit, VisionTransformer):
        raise ConfigError(f"token dropping needs a timm VisionTransformer, got {type(vit).__name__}")
    if vit.attn_pool is not None or vit.global_pool not in ("token", "avg"):
        raise ConfigError(f"token dropping supports ViTs with 'token' or 'avg' pooling, got '{vit.global_pool}'")
    return vit


@REMOVALS.register()
class TokenDropping:
    """Runs a timm ViT on the kept patch tokens only (CLS kept, no fill). Not a pixel fill: the region game
    calls :meth:`logits` instead of filling the image and calling the model."""

    name: ClassVar[str] = "token_drop"
    hole_dependent: ClassVar[bool] = True
    needs_regions: ClassVar[bool] = False

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"token threshold must be in (0, 1], got {threshold!r}")
        self.threshold = float(threshold)

    def kept_tokens(self, model: nn.Module, keep: Tensor) -> Tensor:
        """Which patch tokens are kept: pixel mask (N,H,W) -> (N, num_patches) bool, row-major."""
        vit = vision_transformer(model)
        patch = tuple(vit.patch_embed.patch_size)
        share = F.avg_pool2d(keep.unsqueeze(1).float(), kernel_size=patch, stride=patch)
        return share.flatten(1) >= self.threshold

    def logits(self, model: nn.Module, images: Tensor, keep: Tensor) -> Tensor:
        """Logits (N, classes) of ``model`` on ``images`` (N,3,H,W) in [0,1] with only the kept tokens."""
        check_inputs(images, keep)
        vit = vision_transformer(model)
        inputs = normalised(model, images)
        tokens = vit._pos_embed(vit.patch_embed(inputs))
        prefix = vit.num_prefix_tokens
        kept = self.kept_tokens(vit, keep)
        if kept.shape[1] != tokens.shape[1] - prefix:
            raise ValueError(f"mask gives {kept.shape[1]} patches but the ViT has {tokens.shape[1] - prefix} tokens")
        counts = kept.sum(dim=1)
        length = int(counts.max()) if len(counts) else 0
        # Kept patches first, in their original order (stable sort), then padding.
        index = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :length]
        patches = tokens[:, prefix:].gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        x = vit.norm_pre(vit.patch_drop(torch.cat([tokens[:, :prefix], patches], dim=1)))
        valid = torch.arange(length, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
        padded = bool((~valid).any())
        if padded:
            key_mask = torch.cat([valid.new_ones(len(valid), prefix), valid], dim=1)[:, None, None, :]
            for block in vit.blocks:
                x = block(x, attn_mask=key_mask)
        else:
            x = vit.blocks(x)
        x = vit.norm(x)
        if vit.global_pool == "token":
            pooled = x[:, 0]
        else:
            weights = valid.to(x.dtype).unsqueeze(-1)
            pooled = (x[:, prefix:] * weights).sum(1) / weights.sum(1).clamp_min(1)
        return vit.head(vit.head_drop(vit.fc_norm(pooled)))

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold}

    def __repr__(self) -> str:
        return f"TokenDropping(threshold={self.threshold})"
