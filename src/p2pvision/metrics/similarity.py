"""Similarity of two explanation maps of the same images (other seed or hyperparameter): Spearman rank
correlation, SSIM and the Pearson correlation of HOG features. Higher is more similar (more stable)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from skimage.feature import hog
from torch import Tensor
from torchmetrics.functional import pearson_corrcoef, spearman_corrcoef
from torchmetrics.functional.image import structural_similarity_index_measure

from p2pvision.explanation import Explanation
from p2pvision.metrics.base import METRICS, EvalBatch, Metric, check_choice
from p2pvision.metrics.localisation import normalise_maps

MEASURES = ("spearman", "ssim", "hog_pearson")


def spearman_similarity(maps: Tensor, others: Tensor) -> Tensor:
    """Per image Spearman rank correlation (B,) of the pixels of two maps (B,H,W); ties get mean ranks."""
    return spearman_corrcoef(maps.flatten(1).double().T, others.flatten(1).double().T).view(-1).float()


def ssim_similarity(maps: Tensor, others: Tensor) -> Tensor:
    """Per image SSIM (B,) of two maps, each min-max scaled to [0, 1] first (Gaussian window 11, sigma 1.5)."""
    first, second = normalise_maps(maps).unsqueeze(1), normalise_maps(others).unsqueeze(1)
    similarity = structural_similarity_index_measure(first, second, data_range=1.0, reduction="none")
    if not isinstance(similarity, Tensor):  # a (map, full image) pair only with return_full_image=True
        raise TypeError(f"SSIM gave {type(similarity).__name__}, expected a tensor")
    return similarity.float()


def hog_features(maps: Tensor, cell: int = 8) -> Tensor:
    """HOG descriptors (B,D) of min-max scaled maps (9 orientations, ``cell`` px cells, 2x2 blocks).

    scikit-image computes them image by image: neither torch nor torchmetrics has HOG.
    """
    arrays = normalise_maps(maps).cpu().numpy()
    features = [
        hog(array, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2), feature_vector=True)
        for array in arrays
    ]
    return torch.from_numpy(np.stack(features)).to(maps.device)


def hog_similarity(maps: Tensor, others: Tensor, cell: int = 8) -> Tensor:
    """Per image Pearson correlation (B,) of the HOG descriptors of two maps."""
    first, second = hog_features(maps, cell), hog_features(others, cell)
    return pearson_corrcoef(first.double().T, second.double().T).view(-1).float()


@METRICS.register()
class MapSimilarity(Metric):
    """Similarity of ``pixel_map`` and ``reference_map`` by each of ``measures``. Higher is more similar."""

    category = "similarity"
    name = "map_similarity"
    higher_is_better = True
    requires = ("pixel_map", "reference_map")

    def __init__(self, measures: tuple[str, ...] = MEASURES, hog_cell: int = 8) -> None:
        self.measures = tuple(check_choice("measure", m, MEASURES) for m in measures)
        self.hog_cell = int(hog_cell)
        super().__init__(self.measures)

    def values(self, explanation: Explanation, batch: EvalBatch) -> dict[str, Tensor]:
        pixel_map = self.required(explanation.pixel_map, "pixel_map")
        reference = self.required(batch.reference_map, "reference_map")
        maps, others = pixel_map.float(), reference.float().to(pixel_map.device)
        functions = {
            "spearman": spearman_similarity,
            "ssim": ssim_similarity,
            "hog_pearson": lambda a, b: hog_similarity(a, b, self.hog_cell),
        }
        return {measure: functions[measure](maps, others) for measure in self.measures}

    @property
    def params(self) -> dict[str, Any]:
        return {"measures": list(self.measures), "hog_cell_px": self.hog_cell, "ssim_window": 11}
