"""Localisation and P2P faithfulness metrics: known answers and a reference implementation."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from p2pvision.explanation import Explanation
from p2pvision.metrics.base import EvalBatch
from p2pvision.metrics.faithfulness import ranked_coalitions
from p2pvision.metrics.localisation import PixelAveragePrecision
from p2pvision.regions.masks import mask_iou, mask_precision


def test_precision_and_iou_known_values():
    keep = torch.zeros(3, 4, 4, dtype=torch.bool)
    relevant = torch.zeros(3, 4, 4, dtype=torch.bool)
    keep[0, :2] = True  # 8 kept, 4 of them relevant
    relevant[0, 1:3] = True
    relevant[1, 0] = True  # image 1 keeps nothing: precision 0 by definition
    keep[2] = relevant[2] = True
    assert mask_precision(keep, relevant).tolist() == [0.5, 0.0, 1.0]
    assert mask_iou(keep, relevant).tolist() == pytest.approx([4 / 12, 0.0, 1.0])


def test_pxap_equals_sklearn_average_precision_on_binned_scores():
    rng = np.random.default_rng(0)
    relevant = rng.random((5, 16, 16)) < 0.3
    scores = np.clip(relevant * 0.3 + rng.random((5, 16, 16)) * 0.7, 0, 1).round(2)
    metric = PixelAveragePrecision(bins=100, normalise="none")
    for i in range(0, 5, 2):  # streaming over batches
        maps, masks = torch.tensor(scores[i : i + 2]), torch.tensor(relevant[i : i + 2])
        zeros = torch.zeros(len(maps), dtype=torch.int64)
        metric.update(Explanation("toy", zeros, zeros, pixel_map=maps), EvalBatch(torch.zeros(len(maps), 3, 16, 16),
                                                                                  mask=masks))  # fmt: skip
    expected = average_precision_score(relevant.ravel(), scores.ravel())
    assert metric.compute()["pxap"] == pytest.approx(expected, abs=1e-9)


def test_ranked_coalitions_insertion_and_deletion_by_area():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5, 0.0]])
    areas = torch.tensor([[4.0, 6.0, 50.0, 40.0, 0.0]])  # 100 pixels; slot 4 is empty
    insertion = ranked_coalitions(scores, areas, 0.10, "insertion")[0, 0]
    assert insertion.tolist() == [True, False, False, False, False]  # 4% < 10%, 4+6 = 10% is not below
    deletion = ranked_coalitions(scores, areas, 0.10, "deletion")[0, 0]
    assert deletion.tolist() == [False, False, True, True, False]  # removed until >= 10%: regions 0 and 1
    deletion20 = ranked_coalitions(scores, areas, 0.20, "deletion")[0, 0]
    assert deletion20.tolist() == [False, False, True, False, False]  # 4+6 < 20%, so region 3 goes too
