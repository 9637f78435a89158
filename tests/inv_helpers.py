"""Small cluster-map folders for the INV and labelling tests: a random-weight timm CNN on the bundled photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from p2pvision.inv.clustermaps import InvConfig, cluster_maps
from p2pvision.inv.runs import save_cluster_maps
from p2pvision.models.backbones import create_classifier

CLASSES = ["cat", "coffee", "rocket", "astronaut", "coins", "camera"]
PHOTOS = {"chelsea": 0, "coffee": 1, "rocket": 2, "astronaut": 3}


def make_runs(folder: Path, photos: dict[str, int] = PHOTOS, size: int = 64) -> list[Path]:
    """One cluster-map folder per photo (target class given), with the real pipeline on ``test_resnet``."""
    torch.manual_seed(0)
    model = create_classifier("test_resnet", weights=None, num_classes=len(CLASSES), class_names=CLASSES).eval()
    folders = []
    for name, target in photos.items():
        array = np.array(Image.fromarray(getattr(data, name)()).convert("RGB").resize((size, size)))
        image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
        result = cluster_maps(model, image, target=target, config=InvConfig(embedding="pca"))
        folders.append(save_cluster_maps(result, folder / name, CLASSES, f"{name}.png", "test_resnet"))
    return folders
