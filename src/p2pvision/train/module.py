"""Lightning modules: P2P (selector + classifier, jointly) and the full-image classifier baseline."""

from __future__ import annotations

import abc
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torchmetrics import MeanMetric

from p2pvision.explanation import Explanation
from p2pvision.metrics.base import EvalBatch, Metric
from p2pvision.metrics.localisation import MaskPrecision
from p2pvision.metrics.prediction import Accuracy, KeptFraction
from p2pvision.models.backbones import ImageClassifier, create_classifier
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.model import P2PModel


class _SeededEpochs(L.LightningModule, metaclass=abc.ABCMeta):
    """Reseeds torch's RNG at every epoch start from (seed, epoch, rank): an interrupted run resumed from an
    epoch checkpoint draws the same masks, budgets and augmentations as an uninterrupted one.

    Validation and test use the evaluation's metric objects on the model's :class:`Explanation` of each batch
    (subclasses implement :meth:`explain_batch`): ``acc``, ``kept`` (the kept fraction, where the model keeps an
    input), ``precision`` (of the kept pixels on the data's masks) and, for P2P, the mean chosen ``tau``; they are
    logged as ``val/<key>`` and ``test/<key>`` at the end of each epoch, summed over all processes."""

    def __init__(self, lr: float, weight_decay: float, seed: int) -> None:
        super().__init__()
        self.lr, self.weight_decay, self.seed = lr, weight_decay, seed
        self.evaluation = nn.ModuleDict({"acc": Accuracy(), "kept": KeptFraction(), "precision": MaskPrecision(),
                                         "tau": MeanMetric()})  # fmt: skip

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.seed * 1_000_003 + self.current_epoch * 1_009 + self.global_rank)

    @property
    def progress(self) -> float:
        """Share of training done, in [0, 1] (drives the temperature and sparsity-weight schedules)."""
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
        return min(1.0, self.global_step / max(1, total))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def _optimizer(self) -> torch.optim.Optimizer:
        """The one optimizer :meth:`configure_optimizers` gives (unwrapped from Lightning's)."""
        optimizer = self.optimizers()
        if isinstance(optimizer, list):
            raise RuntimeError(f"{type(self).__name__} trains with one optimizer, got {len(optimizer)}")
        return optimizer.optimizer

    @abc.abstractmethod
    def explain_batch(self, batch: dict) -> Explanation:
        """The model's prediction (and explanation) of a validation or test batch."""

    def _evaluation_metrics(self) -> dict[str, torchmetrics.Metric]:
        """The entries of ``evaluation`` (all metrics) by key."""
        return {key: metric for key, metric in self.evaluation.items() if isinstance(metric, torchmetrics.Metric)}

    def _evaluate(self, batch: dict) -> None:
        explanation = self.explain_batch(batch)
        truth = EvalBatch(batch["image"], labels=batch["label"], mask=batch.get("mask"))
        for key, metric in self._evaluation_metrics().items():
            if key == "tau":
                if "tau" in explanation.extras:
                    metric.update(explanation.extras["tau"])
            elif isinstance(metric, Metric) and metric.applicable(explanation, truth):
                metric.update(explanation, truth)

    def _log_evaluation(self, prefix: str) -> None:
        values = {}
        for key, metric in self._evaluation_metrics().items():
            if metric.update_count:
                value = metric.compute()
                values[f"{prefix}/{key}"] = next(iter(value.values())) if isinstance(value, dict) else value
            metric.reset()
        self.log_dict(values, prog_bar=True)

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_evaluation("val")

    def test_step(self, batch: dict, batch_index: int) -> None:
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._log_evaluation("test")


class _WarmupEpochs(_SeededEpochs):
    """The first ``warmup_epochs`` run at ``warmup_lr`` (what they train is the subclass's choice); the rest at
    ``lr``. :attr:`progress` counts the epochs after the warm-up only, so schedules start when the warm-up ends."""

    def __init__(self, lr: float, weight_decay: float, seed: int, warmup_epochs: int, warmup_lr: float | None) -> None:
        super().__init__(lr, weight_decay, seed)
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = lr if warmup_lr is None else warmup_lr

    @property
    def warming_up(self) -> bool:
        return self.current_epoch < self.warmup_epochs

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        for group in self._optimizer().param_groups:
            group["lr"] = self.warmup_lr if self.warming_up else self.lr

    @property
    def progress(self) -> float:
        """Share of the epochs after the warm-up done, in [0, 1] (1 outside a trainer)."""
        if self._trainer is None:
            return 1.0
        warmup = self.warmup_epochs * self.trainer.num_training_batches
        total = self.trainer.estimated_stepping_batches - warmup
        return min(1.0, max(0.0, (self.global_step - warmup) / max(1, total)))


class P2PLightning(_WarmupEpochs):
    """Trains a :class:`P2PModel`; validates with hard masks and a tau search over ``val_tau_grid``.

    The first ``warmup_epochs`` train the classifier alone on full images at ``warmup_lr`` (a classifier that
    cannot yet read digits gives the selector no signal, and from scratch the sparsity term then wins); the
    temperature and sparsity-weight schedules run over the epochs after the warm-up.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        seed: int = 0,
        val_tau_grid: tuple[float, ...] = (0.1, 0.2, 0.4, 0.7, 1.0),
        warmup_epochs: int = 0,
        warmup_lr: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, seed, warmup_epochs, warmup_lr)
        self.save_hyperparameters()
        self.model = P2PModel(P2PConfig.from_dict(model_config))
        self.val_tau_grid = tuple(val_tau_grid)

    def _warmup_step(self, batch: dict) -> torch.Tensor:
        logits = self.model.classifier(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        metrics = {"train/warmup_ce": loss.detach(), "train/warmup_acc": accuracy, "train/lr": self.warmup_lr}
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=len(logits))
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, batch_size=len(logits))
        return loss

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        if self.warming_up:
            return self._warmup_step(batch)
        config = self.model.config
        progress = self.progress
        draw = float(torch.rand(()))
        test_mask = draw < config.test_mask_prob
        hard = not test_mask and draw < config.test_mask_prob + config.hard_mask_prob
        temperature = config.temperature(progress)
        images, regions = batch["image"], batch["regions"]
        output = self.model(images, regions, temperature=temperature, stochastic=not test_mask, hard=hard)
        losses = self.model.loss(output, batch["label"], config.sparsity_weight(progress))
        samples = output.masks.shape[1]
        accuracy = (output.logits.argmax(-1) == batch["label"].repeat_interleave(samples)).float().mean()
        metrics: dict[str, torch.Tensor | float] = {f"train/{key}": value.detach() for key, value in losses.items()}
        metrics["train/expected_kept"] = output.regions.expected_kept.detach().mean()
        metrics["train/acc_relaxed"] = accuracy
        metrics["train/temperature"] = config.temperature(progress)
        metrics["train/lambda_sparse"] = config.sparsity_weight(progress)
        metrics["train/lr"] = self._optimizer().param_groups[0]["lr"]
        self.log_dict(metrics, prog_bar=False, on_step=True, on_epoch=False, batch_size=len(batch["label"]))
        self.log("loss", losses["loss"].detach(), prog_bar=True, on_step=True, batch_size=len(batch["label"]))
        return losses["loss"]

    def explain_batch(self, batch: dict) -> Explanation:
        return self.model.explain(batch["image"], regions=batch["regions"], grid=self.val_tau_grid)


class ClassifierLightning(_SeededEpochs):
    """The Blackbox baseline: the same classifier trained on full images."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        class_names: list[str],
        weights: str | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(lr, weight_decay, seed)
        self.save_hyperparameters()
        self.model: ImageClassifier = create_classifier(
            name, weights=weights, num_classes=num_classes, class_names=class_names
        )

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log_dict({"train/loss": loss.detach(), "train/acc": accuracy}, on_step=True, batch_size=len(logits))
        self.log("loss", loss.detach(), prog_bar=True, on_step=True, batch_size=len(logits))
        return loss

    def explain_batch(self, batch: dict) -> Explanation:
        return Explanation.of_classifier(self.model, batch["image"])
