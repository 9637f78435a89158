"""Evaluate a P2P model on a data set: accuracy, sparsity, localisation and faithfulness for several delta."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric
from tqdm.auto import tqdm

from p2pvision.metrics.base import EvalBatch, Metric
from p2pvision.metrics.faithfulness import P2PAgreement
from p2pvision.metrics.localisation import MaskIoU, MaskPrecision, PixelAveragePrecision
from p2pvision.metrics.prediction import Accuracy, KeptFraction
from p2pvision.models.p2p.model import P2PModel

DELTAS = (0.8, 0.9, 0.95, 0.99)
# Direction of every reported metric: True if higher is better.
HIGHER_IS_BETTER = {
    "accuracy": True,
    "kept_fraction": False,
    "tau": False,
    "evaluations": False,
    "precision": True,
    "iou": True,
    "pxap": True,
    "object_share": False,
    **{f"insertion@{t}": True for t in (5, 10, 20)},
    **{f"deletion@{t}": False for t in (5, 10, 20)},
}


def _p2p_metrics() -> list[Metric]:
    return [
        Accuracy(),
        KeptFraction(),
        MaskPrecision(),
        MaskIoU(),
        PixelAveragePrecision(normalise="none"),
        P2PAgreement("insertion"),
        P2PAgreement("deletion"),
    ]


@torch.no_grad()
def evaluate_p2p(
    model: P2PModel,
    dataset: Dataset,
    deltas: tuple[float, ...] = DELTAS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Mean metrics per delta over ``dataset`` (dict samples with image, label, regions, optional masks).

    Localisation (precision, IoU, PxAP over region probabilities) needs ``mask``; ``object_share`` (share of
    kept pixels on ``object_mask``, e.g. the distractor of the scene task) is reported when that differs from
    ``mask``. Faithfulness ranks regions by probability and fills removed regions black, as P2P does; the
    reference class is the model's own prediction being explained.
    """
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    metrics = {delta: _p2p_metrics() for delta in deltas}
    means = {delta: {"tau": MeanMetric(), "evaluations": MeanMetric()} for delta in deltas}
    object_share = {delta: MaskPrecision() for delta in deltas}
    count = 0
    for batch in tqdm(loader, desc="evaluating", unit="batch", disable=not progress):
        images, regions = batch["image"].to(device), batch["regions"].to(device)
        labels = batch["label"].to(device)
        mask = batch["mask"].to(device) if "mask" in batch else None
        count += len(labels)
        truth = EvalBatch(images, labels=labels, mask=mask, model=model.classifier)
        for delta in deltas:
            explanation = model.explain(images, regions=regions, delta=delta)
            for metric in metrics[delta]:
                if metric.applicable(explanation, truth):
                    metric.update(explanation, truth)
            means[delta]["tau"].update(explanation.extras["tau"])
            means[delta]["evaluations"].update(explanation.evaluations)
            if "object_mask" in batch and not torch.equal(batch["object_mask"], batch["mask"]):
                object_share[delta].update(explanation, EvalBatch(images, mask=batch["object_mask"].to(device)))
    report = {}
    for delta in deltas:
        row: dict[str, float] = {}
        for metric in metrics[delta]:
            if metric.update_count:
                row.update(metric.compute())
        row.update({key: float(mean.compute()) for key, mean in means[delta].items()})
        if object_share[delta].update_count:
            row["object_share"] = object_share[delta].compute()["precision"]
        row["images"] = count
        report[str(delta)] = row
    return report
