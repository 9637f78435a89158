"""Lightning modules of the trained baselines (``train.mode`` blackbox_pixel, realx, soft_mask).

Each uses P2P's data, budget and warm-up: the first ``warmup_epochs`` at ``warmup_lr`` teach the classifier
(REAL-X: the evaluator) before any mask is learned, the remaining epochs train the baseline proper at ``lr``. The
model settings are a :class:`~p2pvision.models.p2p.config.P2PConfig` (see :mod:`p2pvision.baselines`); the sparsity
weight follows P2P's schedule over the epochs after the warm-up.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from p2pvision.baselines import PixelMaskClassifier, RealXModel, SoftMaskModel
from p2pvision.explanation import Explanation
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.regions import region_areas
from p2pvision.train.module import _WarmupEpochs


class BaselineLightning(_WarmupEpochs):
    """Model construction, the sparsity schedule and validation shared by the baselines."""

    model_class: type

    def __init__(
        self,
        model_config: dict[str, Any],
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        seed: int = 0,
        warmup_epochs: int = 0,
        warmup_lr: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, seed, warmup_epochs, warmup_lr)
        self.save_hyperparameters()
        self.config = P2PConfig.from_dict(model_config)
        self.model = self.model_class(self.config)

    @property
    def sparsity_weight(self) -> float:
        """P2P's lambda schedule over the epochs after the warm-up."""
        return self.config.sparsity_weight(self.progress)

    def log_train(self, loss: Tensor, logits: Tensor, labels: Tensor, **extra: Tensor | float) -> Tensor:
        accuracy = (logits.argmax(-1) == labels.repeat_interleave(len(logits) // len(labels))).float().mean()
        metrics = {"train/loss": loss.detach(), "train/acc": accuracy, **extra}
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(labels))
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, batch_size=len(labels))
        return loss

    def explain_batch(self, batch: dict) -> Explanation:
        return self.model.explain(batch["image"], regions=batch.get("regions"))


class PixelMaskLightning(BaselineLightning):
    """Blackbox-Pixel: full images in the warm-up, then the fixed evenly spaced pixel mask."""

    model_class = PixelMaskClassifier

    def training_step(self, batch: dict, batch_index: int) -> Tensor:
        logits = self.model(batch["image"], masked=not self.warming_up)
        return self.log_train(F.cross_entropy(logits, batch["label"]), logits, batch["label"])


class RealXLightning(BaselineLightning):
    """REAL-X: in the warm-up the evaluator learns on random region masks (each image keeps every region with a
    probability drawn from U(0, 1)); afterwards the selector learns by REINFORCE against the frozen evaluator,
    ``max(2, mc_samples)`` masks per image with the mean reward of the image's masks as baseline."""

    model_class = RealXModel

    def training_step(self, batch: dict, batch_index: int) -> Tensor:
        images, regions, labels = batch["image"], batch["regions"], batch["label"]
        model: RealXModel = self.model
        if self.warming_up:
            present = region_areas(regions, self.config.max_regions) > 0
            rate = torch.rand(len(images), 1, device=images.device)
            masks = (torch.rand(present.shape, device=images.device) < rate) & present
            logits = model.evaluate(images, regions, masks[:, None])
            return self.log_train(F.cross_entropy(logits, labels), logits, labels)
        model.evaluator.eval()  # frozen: no gradients, no batch-norm statistics from the selector's masks
        samples = max(2, self.config.mc_samples)
        region_logits, areas = model.region_logits(images, regions)
        policy = torch.distributions.Bernoulli(logits=region_logits[:, None].expand(-1, samples, -1))
        present = (areas > 0)[:, None]
        masks = policy.sample() * present
        with torch.no_grad():
            logits = model.evaluate(images, regions, masks)
            log_likelihood = logits.log_softmax(-1).gather(1, labels.repeat_interleave(samples)[:, None])
        kept = (masks * areas[:, None]).sum(-1) / areas.sum(-1, keepdim=True)
        weight = self.sparsity_weight
        reward = log_likelihood.view(-1, samples) - weight * (kept - self.config.fixed_tau).clamp(min=0)
        advantage = reward - reward.mean(1, keepdim=True)
        log_prob = (policy.log_prob(masks) * present).sum(-1)
        loss = -(advantage * log_prob).mean()
        return self.log_train(loss, logits, labels, **{"train/reward": reward.mean(), "train/kept": kept.mean(),
                                                       "train/lambda_sparse": weight})  # fmt: skip


class SoftMaskLightning(BaselineLightning):
    """Soft masks: the classifier alone on full images in the warm-up, then selector and classifier jointly,
    cross-entropy on the softly masked images plus ``lambda * max(mean(m) - tau, 0)``."""

    model_class = SoftMaskModel

    def training_step(self, batch: dict, batch_index: int) -> Tensor:
        images, labels = batch["image"], batch["label"]
        if self.warming_up:
            logits = self.model.classifier(images)
            return self.log_train(F.cross_entropy(logits, labels), logits, labels)
        logits, mask = self.model(images)
        kept = mask.flatten(1).mean(1)
        weight = self.sparsity_weight
        sparsity = weight * (kept - self.config.fixed_tau).clamp(min=0).mean()
        loss = F.cross_entropy(logits, labels) + sparsity
        return self.log_train(loss, logits, labels, **{"train/sparsity": sparsity.detach(), "train/kept": kept.mean(),
                                                       "train/lambda_sparse": weight})  # fmt: skip


BASELINE_MODES: dict[str, type[BaselineLightning]] = {
    module.model_class.kind: module for module in (PixelMaskLightning, RealXLightning, SoftMaskLightning)
}
