"""The demo job run by ``make demo``: the built-in data set, its masks and region partitions, as pictures."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from p2pvision.cache import atomic_path, write_json
from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.semisynthetic import SemiSyntheticConfig, Split, Task
from p2pvision.regions.partition import make_partitioner, partition_batch
from p2pvision.report.contact_sheet import contact_sheet

DEMO_PARTITION = {"name": "slic", "n_segments": 50, "compactness": 20.0}


def write_contact_sheet(
    config: SemiSyntheticConfig, task: Task, split: Split, out: Path, count: int = 32, root: Path | None = None
) -> Path:
    """A PNG of the first ``count`` images of a split: object mask outlines (yellow), SLIC boundaries, labels."""
    dataset = SemiSyntheticDataset(split, task, config, root=root)
    count = min(count, len(dataset))
    images = np.array(dataset.arrays.images[:count])
    partitioner = make_partitioner(**DEMO_PARTITION)
    regions = partition_batch(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, partitioner).numpy()
    data = dataset.data
    captions = [
        f"{data.object_classes[o]} | {data.scene_classes[s]}"
        for o, s in zip(dataset.arrays.object_labels[:count], dataset.arrays.scene_labels[:count])
    ]
    sheet = contact_sheet(images, np.asarray(dataset.arrays.object_masks[:count]), regions, captions, scale=3)
    with atomic_path(out) as tmp:
        sheet.save(tmp)
    return out


def run_demo(out: Path) -> None:
    """Generate the default data set and write a contact sheet and a summary; print where they are."""
    start = time.perf_counter()
    config = SemiSyntheticConfig()
    train = SemiSyntheticDataset("train", "object", config)
    sheet = write_contact_sheet(config, "object", "train", out / "contact_sheet.png")
    summary = {
        "data": str(train.data.root),
        "config": vars(config) | {"object_scale": list(config.object_scale)},
        "object_classes": list(train.data.object_classes),
        "scene_classes": list(train.data.scene_classes),
        "object_area_share": {split: train.data.object_area_share(split) for split in ("train", "val", "test")},
        "partition": DEMO_PARTITION,
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "summary.json", summary)
    print(f"data set: {train.data.root} ({len(train)} training images, {config.image_size} px)")
    shares = ", ".join(f"{k} {v:.3f}" for k, v in summary["object_area_share"].items())
    print(f"mean object area share: {shares}")
    print(f"contact sheet (yellow: object masks, white: SLIC regions): {sheet.resolve()}")
    print(f"summary: {(out / 'summary.json').resolve()}")
