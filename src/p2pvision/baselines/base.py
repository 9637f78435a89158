"""What the learned-mask baselines share: their explanation, masking with the configured fill, and a
selector network (P2P's dense selector with a constant budget input and a single output channel)."""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from p2pvision.explanation import Explanation, order_from_scores, resolve_target
from p2pvision.models.backbones import ImageClassifier, create_classifier
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.hub import P2PHubMixin
from p2pvision.models.p2p.selector import Selector
from p2pvision.regions import make_partitioner, partition_batch, region_areas
from p2pvision.registry import Registry
from p2pvision.removal import make_removal

# The trained baselines by kind (blackbox_pixel, realx, soft_mask): each class registers itself in its module.
BASELINES: Registry[type[nn.Module]] = Registry("baseline", package="p2pvision.baselines", name_attribute="kind")


def selection_explanation(
    kind: str,
    probabilities: Tensor,
    keep: Tensor,
    pixel_map: Tensor,
    target: int | Tensor | None,
    started: float,
    regions: Tensor | None = None,
    scores: Tensor | None = None,
) -> Explanation:
    """The :class:`Explanation` of a masked prediction: ``keep`` (B,H,W) is what the classifier saw (bool for hard
    masks, float in [0, 1] for soft ones), ``pixel_map`` the selection scores per pixel, ``regions``/``scores`` the
    regions and their selection probabilities for region-level selectors; one evaluation (selector + classifier)
    per image."""
    predicted = probabilities.argmax(-1)
    order = None
    if scores is not None and regions is not None:
        order = order_from_scores(scores, region_areas(regions, scores.shape[1]) > 0)
    return Explanation(
        method=kind, predicted=predicted, target=resolve_target(target, predicted), pixel_map=pixel_map,
        regions=regions, scores=scores, order=order, keep=keep, probabilities=probabilities,
        evaluations=torch.ones(len(predicted), device=predicted.device), seconds=time.perf_counter() - started,
    )  # fmt: skip


def make_selector(config: P2PConfig) -> Selector:
    """P2P's selector architecture with one output channel (a selection logit per pixel) and no embedding."""
    return Selector(config.selector_backbone, config.selector_weights, config.selector_levels, config.head_channels,
                    embedding_dim=0, initial_keep_logit=config.initial_keep_logit)  # fmt: skip


def selection_logits(selector: Selector, config: P2PConfig, images: Tensor) -> Tensor:
    """Per-pixel selection logits (B, 1, H, W); the budget input is the constant ``config.fixed_tau``."""
    tau = torch.full((len(images),), config.fixed_tau, device=images.device, dtype=images.dtype)
    return selector.head(selector.features(images), tau, (images.shape[-2], images.shape[-1]))


def regions_for(images: Tensor, config: P2PConfig, regions: Tensor | None) -> Tensor:
    """``regions`` on the images' device, or the configured partition of ``images``."""
    if regions is None:
        regions = partition_batch(images, make_partitioner(**config.partition))
    return regions.to(images.device)


class SelectorClassifier(P2PHubMixin, nn.Module):
    """A selector (:func:`make_selector`) and the configured classifier, which sees images masked with the
    configured fill."""

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
