"""What the learned-mask baselines share: their prediction result, masking with the configured fill, and a
selector network (P2P's dense selector with a constant budget input and a single output channel)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from p2pvision.models.backbones import ImageClassifier, create_classifier
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.selector import Selector
from p2pvision.regions import make_partitioner, partition_batch
from p2pvision.regions.masks import hard_keep
from p2pvision.removal import make_removal


@dataclass
class Selection:
    """A batch of predictions from masked images (tensors on the images' device).

    ``keep`` (B, H, W) is what the classifier saw: bool for hard masks, float in [0, 1] for soft ones;
    ``pixel_map`` (B, H, W) the selection scores per pixel; ``regions`` (B, H, W) and ``scores`` (B, K) the
    regions and their selection probabilities, for region-level selectors (else None).
    """

    predicted: Tensor
    probabilities: Tensor
    keep: Tensor
    pixel_map: Tensor
    regions: Tensor | None = None
    scores: Tensor | None = None

    @property
    def kept_fraction(self) -> Tensor:
        """Share of pixels kept per image (a soft mask's mean, see :func:`~p2pvision.metrics.localisation.hard_keep`),
        (B,)."""
        return hard_keep(self.keep).flatten(1).float().mean(1)


def make_selector(config: P2PConfig) -> Selector:
    """P2P's selector architecture with one output channel (a selection logit per pixel) and no embedding."""
    return Selector(config.selector_backbone, config.selector_weights, config.selector_levels, config.head_channels,
                    embedding_dim=0, initial_keep_logit=config.initial_keep_logit)  # fmt: skip


def selection_logits(selector: Selector, config: P2PConfig, images: Tensor) -> Tensor:
    """Per-pixel selection logits (B, 1, H, W); the budget input is the constant ``config.fixed_tau``."""
    tau = torch.full((len(images),), config.fixed_tau, device=images.device, dtype=images.dtype)
    return selector.head(selector.features(images), tau, tuple(images.shape[-2:]))


def regions_for(images: Tensor, config: P2PConfig, regions: Tensor | None) -> Tensor:
    """``regions`` on the images' device, or the configured partition of ``images``."""
    if regions is None:
        regions = partition_batch(images, make_partitioner(**config.partition))
    return regions.to(images.device)


class SelectorClassifier(nn.Module):
    """A selector (:func:`make_selector`) and the configured classifier, which sees images masked with the
    configured fill."""

    kind: str

    def __init__(self, config: P2PConfig) -> None:
        super().__init__()
        self.config = config
        self.selector = make_selector(config)
        self.classifier: ImageClassifier = create_classifier(
            config.classifier, weights=config.classifier_weights, num_classes=config.num_classes,
            class_names=config.class_names,
        )  # fmt: skip
        self.fill = make_removal(config.fill)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names
