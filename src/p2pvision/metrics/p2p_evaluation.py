"""Evaluate a P2P model on a data set: accuracy, sparsity, localisation and faithfulness for several delta."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from p2pvision.game import RegionGame
from p2pvision.metrics.faithfulness import ranking_agreement
from p2pvision.metrics.localisation import PixelAveragePrecision, mask_iou, mask_precision
from p2pvision.models.p2p.model import P2PModel
from p2pvision.regions.ops import region_to_pixel
from p2pvision.removal import make_removal

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
    fill = make_removal("black")
    sums: dict[float, dict[str, float]] = {delta: defaultdict(float) for delta in deltas}
    pxap = {delta: PixelAveragePrecision() for delta in deltas}
    count = 0
    for batch in tqdm(loader, desc="evaluating", unit="batch", disable=not progress):
        images, regions, labels = batch["image"].to(device), batch["regions"].to(device), batch["label"]
        count += len(labels)
        for delta in deltas:
            result = model.explain(images, regions, delta=delta)
            totals = sums[delta]
            totals["accuracy"] += float((result.predicted == labels).sum())
            totals["kept_fraction"] += float(result.kept_fraction.sum())
            totals["tau"] += float(result.tau.sum())
            totals["evaluations"] += float(result.evaluations.sum())
            if "mask" in batch:
                totals["precision"] += float(mask_precision(result.keep_mask, batch["mask"]).sum())
                totals["iou"] += float(mask_iou(result.keep_mask, batch["mask"]).sum())
                pxap[delta].update(region_to_pixel(result.region_probs, result.regions), batch["mask"])
            if "object_mask" in batch and not torch.equal(batch["object_mask"], batch["mask"]):
                totals["object_share"] += float(mask_precision(result.keep_mask, batch["object_mask"]).sum())
            game = RegionGame(model.classifier, images, regions, fill, target=result.predicted.to(device))
            for key, agreement in ranking_agreement(game, result.region_probs.to(device), result.predicted).items():
                totals[key] += float(agreement.sum())
    report = {}
    for delta in deltas:
        report[str(delta)] = {key: value / max(count, 1) for key, value in sums[delta].items()}
        if "precision" in sums[delta]:
            report[str(delta)]["pxap"] = pxap[delta].compute()
        report[str(delta)]["images"] = count
    return report
