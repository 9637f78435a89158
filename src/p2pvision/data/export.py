"""Export data sets as an ImageFolder layout with a parallel masks folder, readable by any tool.

Layout: ``OUT/<split>/<class>/<id>.png`` and ``OUT/masks/<split>/<class>/<id>.png`` (8-bit, 255 = relevant
region), plus ``OUT/info.json``. The export is written to a temporary folder and renamed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from p2pvision.cache import atomic_folder, write_json
from p2pvision.data.local import ClassDataset
from p2pvision.errors import ConfigError


def check_export_folder(out: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite`` (checked before any image is generated or written)."""
    out = Path(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export folder '{out}' is not empty: choose another folder or pass --overwrite")


def export_image_folder(
    splits: Mapping[str, ClassDataset], out: str | os.PathLike[str], info: dict | None = None, overwrite: bool = False,
    progress: bool = True,
) -> Path:  # fmt: skip
    """Write each split's samples (dicts with image, label, optional mask) as PNG files under ``out``."""
    out = Path(out)
    check_export_folder(out, overwrite)
    counts: dict[str, int] = {}
    with atomic_folder(out) as tmp:  # renamed into place when complete, with the usual permissions
        for split, dataset in splits.items():
            classes = dataset.classes
            for index in tqdm(range(len(dataset)), desc=f"exporting {split}", unit="img", disable=not progress):
                sample = dataset[index]
                name = f"{classes[sample['label']]}/{index:06d}.png"
                image = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                _save_png(image, tmp / split / name)
                if "mask" in sample:
                    _save_png(sample["mask"].numpy().astype(np.uint8) * 255, tmp / "masks" / split / name)
            counts[split] = len(dataset)
        write_json(tmp / "info.json", {**(info or {}), "images": counts, "layout": __doc__.split("\n\n")[1]})
    return out


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)


def export_semisynthetic(
    config, task: str, out: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
    overwrite: bool = False, progress: bool = True,
) -> tuple[Path, int]:  # fmt: skip
    """Export the built-in semi-synthetic data set (``config``: a ``SemiSyntheticConfig``; ``task``: "object" or
    "scene") with its masks as an ImageFolder layout under ``out``; returns the folder and the number of images."""
    from dataclasses import asdict

    from p2pvision.data.builtin import SemiSyntheticDataset

    check_export_folder(out, overwrite)
    splits = {s: SemiSyntheticDataset(s, task, config, root=root, progress=progress) for s in ("train", "val", "test")}
    info = {
        "dataset": "p2pvision semi-synthetic",
        "task": task,
        "config": asdict(config),
        "classes": splits["train"].classes,
        "relevant_area_share": {split: dataset.relevant_area_share for split, dataset in splits.items()},
    }
    folder = export_image_folder(splits, out, info, overwrite=overwrite, progress=progress)
    return folder, sum(len(d) for d in splits.values())
