"""Blackbox-Pixel: the classifier sees a fixed, evenly spaced share of the pixels of every image.

Pixel-level sparsity at P2P's kept fraction keeps much of the accuracy without saying anything about the image,
which is why a kept fraction alone is no interpretability claim. The mask is an ordered-dither (Bayer) pattern:
pixels are ranked by a Bayer matrix tiled over the image and the ``round(fraction * H * W)`` lowest ranks are kept,
so the kept pixels form a regular lattice at fractions 1/4, 1/16... and stay evenly spread at any other fraction.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor, nn

from p2pvision.baselines.base import BASELINES, selection_explanation
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.game import classify_masked
from p2pvision.models.backbones import ImageClassifier, create_classifier
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.hub import P2PHubMixin
from p2pvision.removal import make_removal


def bayer_matrix(order: int) -> np.ndarray:
    """The (2^order x 2^order) Bayer index matrix: a permutation of 0..4^order-1 spread as evenly as possible."""
    matrix = np.zeros((1, 1), dtype=np.int64)
    for _ in range(order):
        matrix = np.block([[4 * matrix, 4 * matrix + 2], [4 * matrix + 3, 4 * matrix + 1]])
    return matrix


def even_pixel_mask(height: int, width: int, fraction: float) -> Tensor:
    """Bool (H, W) mask keeping exactly ``round(fraction * H * W)`` evenly spaced pixels (see the module docstring)."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ConfigError(f"kept fraction must be a number in (0, 1], got {fraction!r}")
    if height < 1 or width < 1:
        raise ConfigError(f"mask size must be positive, got {height} x {width}")
    order = int(np.ceil(np.log2(max(height, width, 1))))
    ranks = bayer_matrix(order)[:height, :width].ravel()
    keep = np.zeros(height * width, dtype=bool)
    keep[np.argsort(ranks, kind="stable")[: int(round(fraction * height * width))]] = True
    return torch.from_numpy(keep.reshape(height, width))


@BASELINES.register()
class PixelMaskClassifier(P2PHubMixin, nn.Module):
    """A classifier on images whose pixels outside :func:`even_pixel_mask` (at ``config.fixed_tau``) are removed with
    the configured fill (``config.fill``, black by default, as P2P's)."""

    kind = "blackbox_pixel"
    card_summary = (
        "A Blackbox-Pixel baseline (p2pvision): a classifier trained on images of which only a fixed, evenly spaced "
        "share of the pixels is kept; it shows that a kept fraction alone is no interpretability claim."
    )
    mask: Tensor  # buffer (H, W) bool: the kept pixels

    def __init__(self, config: P2PConfig) -> None:
        super().__init__()
        self.config = config
        self.classifier: ImageClassifier = create_classifier(
            config.classifier, weights=config.classifier_weights, num_classes=config.num_classes,
            class_names=config.class_names,
        )  # fmt: skip
        self.fill = make_removal(config.fill)
        mask = even_pixel_mask(config.image_size, config.image_size, config.fixed_tau)
        self.register_buffer("mask", mask, persistent=False)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def keep(self, images: Tensor) -> Tensor:
        """The kept pixels (B, H, W) bool of ``images``; they must have the configured size."""
        if tuple(images.shape[-2:]) != tuple(self.mask.shape):
            raise ConfigError(f"Blackbox-Pixel was built for {tuple(self.mask.shape)} images, got "
                              f"{tuple(images.shape[-2:])}")  # fmt: skip
        return self.mask.expand(len(images), -1, -1)

    def forward(self, images: Tensor, masked: bool = True) -> Tensor:
        """Class logits of the masked images (of the full ones with ``masked=False``, the warm-up)."""
        if masked:
            return classify_masked(self.classifier, images, self.keep(images), self.fill)
        return self.classifier(images)

    @torch.no_grad()
    def explain(
        self, images: Tensor, target: int | Tensor | None = None, regions: Tensor | None = None
    ) -> Explanation:
        """Predict from the masked images; ``keep`` is the fixed mask (``regions`` are not used)."""
        started = time.perf_counter()
        probabilities = self(images).softmax(-1)
        keep = self.keep(images)
        return selection_explanation(self.kind, probabilities, keep, keep.float(), target, started)
