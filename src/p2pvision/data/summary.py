"""Summary statistics of a data set: images per class, image sizes and mask area shares of a sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DatasetSummary:
    """What ``p2pvision data inspect`` reports: ``counts`` (images per class, in ``classes`` order), the smallest
    and largest image size (H, W) and the mask area share (mean, std; None without masks) over ``samples``, a
    random sample of the data set (seed 0)."""

    classes: list[str]
    size: int
    has_masks: bool
    counts: list[int]
    samples: list[dict] = field(repr=False)
    min_size: list[int]
    max_size: list[int]
    mask_share: tuple[float, float] | None


def summarise_dataset(dataset, sample: int = 200) -> DatasetSummary:
    """Class counts of ``dataset`` (with ``classes``, ``has_masks``) and image-size and mask statistics over
    ``sample`` images drawn at random (seed 0)."""
    from p2pvision.data.local import dataset_labels

    labels = dataset_labels(dataset)
    counts = np.bincount(labels, minlength=len(dataset.classes))
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(dataset), size=min(sample, len(dataset)), replace=False).tolist())
    samples = [dataset[i] for i in picked]
    sizes = np.array([tuple(s["image"].shape[1:]) for s in samples])
    mask_share = None
    if dataset.has_masks:
        shares = [float(s["mask"].float().mean()) for s in samples]
        mask_share = (float(np.mean(shares)), float(np.std(shares)))
    return DatasetSummary(
        classes=list(dataset.classes), size=len(dataset), has_masks=bool(dataset.has_masks),
        counts=[int(c) for c in counts], samples=samples, min_size=sizes.min(0).tolist(),
        max_size=sizes.max(0).tolist(), mask_share=mask_share,
    )  # fmt: skip
