"""Every metric of spec/metrics.md: known answers on constructed cases, Quantus/scipy/sklearn references, invariants."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.metrics.base import EvalBatch
from p2pvision.metrics.faithfulness import crop_boxes, tight_boxes
from p2pvision.metrics.localisation import pointing_game, relevance_mass
from p2pvision.metrics.registry import METRICS, make_metric
from p2pvision.regions.masks import hard_keep, top_share_mask

SIZE = 32


class PatchModel(nn.Module):
    """Two classes: logit of class 0 = 100 * (mean of the top-left 8x8 patch) - 50, logit of class 1 = 0."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        value = images[:, :, :8, :8].mean(dim=(1, 2, 3))
        return torch.stack([100 * value - 50, torch.zeros_like(value)], dim=1)


def grid_regions(batch: int, cells: int = 4) -> torch.Tensor:
    index = torch.arange(SIZE) * cells // SIZE
    return (index.view(-1, 1) * cells + index.view(1, -1)).expand(batch, -1, -1).contiguous()


def patch_map(batch: int, first: bool = True) -> torch.Tensor:
    """A map ranking the top-left patch first (or last), the other pixels in index order."""
    maps = torch.linspace(0.5, 0.0, SIZE * SIZE).view(SIZE, SIZE).repeat(batch, 1, 1)
    maps[:, :8, :8] = 1.0 if first else -1.0
    return maps


EXPLANATION_FIELDS = {"pixel_map", "regions", "scores", "keep", "evaluations", "seconds"}


def split(predicted: torch.Tensor, **fields) -> tuple[Explanation, EvalBatch]:
    """What a method explains (its prediction is the explained class) and what the evaluator adds."""
    explained = {key: value for key, value in fields.items() if key in EXPLANATION_FIELDS}
    truth = {key: value for key, value in fields.items() if key not in EXPLANATION_FIELDS}
    return Explanation("toy", predicted, predicted, **explained), EvalBatch(**truth)


def toy_inputs(batch: int = 2, first: bool = True, **fields) -> tuple[Explanation, EvalBatch]:
    images = torch.ones(batch, 3, SIZE, SIZE)
    maps = patch_map(batch, first)
    regions = grid_regions(batch)
    scores = torch.zeros(batch, 16).scatter_add(1, regions.flatten(1), maps.flatten(1)) / 64
    zeros = torch.zeros(batch, dtype=torch.long)
    base = dict(images=images, predicted=zeros, labels=zeros, model=PatchModel(), pixel_map=maps, regions=regions,
                scores=scores)  # fmt: skip
    return split(**{**base, **fields})


def run(spec, inputs: tuple[Explanation, EvalBatch]) -> dict[str, float]:
    metric = make_metric(spec)
    metric.update(*inputs)
    return metric.compute()


# -- localisation ---------------------------------------------------------------------------------------------


def test_top_share_mask_keeps_exact_counts_and_mask_area_by_default():
    maps = torch.arange(16.0).view(1, 4, 4).repeat(2, 1, 1)
    kept = top_share_mask(maps, torch.tensor([0.25, 0.5]))
    assert kept.flatten(1).sum(1).tolist() == [4, 8] and kept[0, 3].all()
    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
    mask[:, :8, :8] = True  # 1/16 of the image: the top 64 pixels of the map are exactly the patch
    values = run("precision", toy_inputs(1, mask=mask))
    assert values == {"precision": 1.0}
    assert run({"name": "iou", "share": 0.125}, toy_inputs(1, mask=mask))["iou"] == pytest.approx(0.5)


def test_pointing_game_known_answers_with_tolerance():
    maps = torch.zeros(3, 20, 20)
    maps[:, 10, 13] = 1.0
    mask = torch.zeros(3, 20, 20, dtype=torch.bool)
    mask[:, 10, 10] = True
    mask[2] = False  # empty ground truth: undefined
    assert pointing_game(maps, mask)[:2].tolist() == [0.0, 0.0]
    assert pointing_game(maps, mask, tolerance=3)[:2].tolist() == [1.0, 1.0]
    assert pointing_game(maps, mask, tolerance=2)[:2].tolist() == [0.0, 0.0]
    assert math.isnan(pointing_game(maps, mask)[2])
    metric = make_metric("pointing_game", tolerance=3)
    assert metric.keys == ("pointing_game@3px",) and metric.higher_is_better


def test_relevance_mass_ignores_negative_evidence():
    maps = torch.tensor([[[2.0, -5.0], [1.0, 1.0]]])
    mask = torch.tensor([[[True, True], [False, False]]])
    assert relevance_mass(maps, mask).tolist() == [0.5]  # 2 of the positive 4; the -5 is left out
    assert relevance_mass(torch.zeros(1, 2, 2), mask).tolist() == [0.0]


def quantus_localisation(metric_name: str, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    quantus = pytest.importorskip("quantus")
    metric = getattr(quantus, metric_name)(disable_warnings=True)
    images = np.zeros((len(maps), 3, *maps.shape[1:]), np.float32)
    return np.array(metric(model=None, x_batch=images, y_batch=np.zeros(len(maps), int), a_batch=maps[:, None],
                           s_batch=masks[:, None].astype(np.float32)), dtype=np.float64)  # fmt: skip


def test_pointing_game_and_relevance_mass_equal_quantus():
    rng = np.random.default_rng(0)
    maps = rng.random((12, 24, 24)).astype(np.float32)
    maps[:4] = maps[:4].round(1)  # ties for the maximum: any tied pixel counts in both
    masks = rng.random((12, 24, 24)) < 0.3
    ours = pointing_game(torch.tensor(maps), torch.tensor(masks)).numpy()
    np.testing.assert_array_equal(ours, quantus_localisation("PointingGame", maps, masks))
    ours = relevance_mass(torch.tensor(maps), torch.tensor(masks)).numpy()
    np.testing.assert_allclose(ours, quantus_localisation("RelevanceMassAccuracy", maps, masks), rtol=1e-5)


def test_box_error_hits_a_blob_on_the_object_and_misses_one_elsewhere():
    mask = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    mask[:, 4:14, 4:14] = True
    maps = torch.zeros(3, SIZE, SIZE)
    maps[0, 5:14, 4:13] = 1.0  # IoU 81/100 with the object's box
    maps[1, 20:30, 20:30] = 1.0  # elsewhere
    maps[2, 4:14, 4:14], maps[2, 25:27, 25:27] = 1.0, 1.0  # a smaller second blob: the largest one counts
    assert run("box_error", toy_inputs(3, pixel_map=maps, mask=mask)) == {"box_error": pytest.approx(1 / 3)}
    assert make_metric("box_error").higher_is_better is False


# -- faithfulness ---------------------------------------------------------------------------------------------


def test_rise_auc_known_answers_on_a_model_that_reads_one_patch():
    # The patch holds the top 1/16 of the pixels: after the first step of 1/16 the model is certain (p ~ 1).
    insertion = run({"name": "rise", "mode": "insertion", "steps": 16, "removal": "black"}, toy_inputs())
    assert insertion["rise_insertion_auc"] == pytest.approx(15 / 16 + 1 / 32, abs=1e-6)
    deletion = run({"name": "rise", "mode": "deletion", "steps": 16}, toy_inputs())
    assert deletion["rise_deletion_auc"] == pytest.approx(1 / 32, abs=1e-6)
    worse = run({"name": "rise", "mode": "deletion", "steps": 16}, toy_inputs(first=False))
    assert worse["rise_deletion_auc"] == pytest.approx(15 / 16 + 1 / 32, abs=1e-6)
    metric = make_metric({"name": "rise", "mode": "deletion"})
    assert metric.higher_is_better is False and metric.settings["removal"] == {"name": "black"}
    assert make_metric("rise").settings["removal"] == {"name": "blur", "sigma": 10.0}


def test_rise_deletion_curve_equals_quantus_region_perturbation():
    quantus = pytest.importorskip("quantus")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 3)).eval()
    images = torch.rand(4, 3, SIZE, SIZE)
    images[:, :, 0, 0] = 0.0  # Quantus' "black" is the image minimum
    maps = torch.rand(4, SIZE, SIZE)
    inputs = split(images=images, predicted=torch.tensor([0, 1, 2, 0]), model=model, pixel_map=maps)
    grid = {"name": "grid", "grid": 4}  # 8 px patches, Quantus' patch_size; both use softmax probabilities
    metric = make_metric("rise", mode="deletion", steps=16, removal="black", features=grid)
    with torch.no_grad():
        curves, _ = metric.run_curve(*inputs)
    reference = quantus.RegionPerturbation(patch_size=8, regions_evaluation=16, perturb_baseline="black",
                                           normalise=False, disable_warnings=True)  # fmt: skip
    expected = reference(model=model, x_batch=images.numpy(), y_batch=np.array([0, 1, 2, 0]),
                         a_batch=maps[:, None].numpy(), device="cpu")  # fmt: skip
    np.testing.assert_allclose((curves[:, :1] - curves[:, 1:]).numpy(), np.array(expected), atol=1e-5)


def test_moxi_accuracy_readings_known_answers():
    grid = {"name": "grid", "grid": 4}
    spec = {"name": "moxi_accuracy", "mode": "insertion", "removal": "black", "features": grid}
    assert run(spec, toy_inputs()) == {"moxi_insertion@4": 1.0}  # 1 of 16 patches visible: the right one
    assert run(spec, toy_inputs(first=False)) == {"moxi_insertion@4": 0.0}
    deletion = {**spec, "mode": "deletion"}
    assert run(deletion, toy_inputs()) == {"moxi_deletion@10": 0.0}  # masking 2 patches removes the evidence
    metric = make_metric(deletion)
    metric.update(*toy_inputs(first=False))
    curve = metric.curve()
    assert curve["y"][0] == 1.0 and curve["y"][-1] == 0.0 and 0.1 in [round(x, 6) for x in curve["x"]]


def test_p2p_agreement_known_answers():
    insertion = run({"name": "p2p_agreement", "mode": "insertion"}, toy_inputs())
    assert insertion == {"insertion@5": 0.0, "insertion@10": 1.0, "insertion@20": 1.0}  # the patch is 6.25%
    deletion = run({"name": "p2p_agreement", "mode": "deletion"}, toy_inputs())
    assert deletion == {"deletion@5": 0.0, "deletion@10": 0.0, "deletion@20": 0.0}


def test_p2p_agreement_acts_on_the_kept_input_by_default_as_the_authors_code():
    keep = torch.ones(2, SIZE, SIZE, dtype=torch.bool)
    keep[:, :8, :8] = False  # the method kept everything but the patch the model reads
    spec = {"name": "p2p_agreement", "mode": "insertion"}
    masked = run(spec, toy_inputs(keep=keep))  # the removed patch stays removed: the prediction flips everywhere
    assert masked == {"insertion@5": 0.0, "insertion@10": 0.0, "insertion@20": 0.0}
    original = run({**spec, "base": "original"}, toy_inputs(keep=keep))  # curves on the whole image
    assert original == {"insertion@5": 0.0, "insertion@10": 1.0, "insertion@20": 1.0}
    assert make_metric(spec).params["base"] == "masked"


def test_crop_boxes_equals_interpolate_and_the_saliency_metric_known_value():
    images = torch.rand(2, 3, SIZE, SIZE)
    boxes = torch.tensor([[0, 16, 0, 16], [0, SIZE, 0, SIZE]])
    crops = crop_boxes(images, boxes)
    expected = F.interpolate(images[:1, :, :16, :16], size=SIZE, mode="bilinear", align_corners=False)
    torch.testing.assert_close(crops[:1], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(crops[1:], images[1:], atol=1e-5, rtol=0)
    binary = torch.zeros(2, 8, 8, dtype=torch.bool)
    binary[0, 2:4, 3:7] = True
    assert tight_boxes(binary).tolist() == [[2, 4, 3, 7], [0, 8, 0, 8]]

    maps = torch.zeros(2, SIZE, SIZE)
    maps[0, :16, :16] = 1.0  # a quarter of the image
    maps[1, :2, :2] = 1.0  # 4 pixels: below the 5% floor
    inputs = toy_inputs(2, pixel_map=maps)
    probability = torch.sigmoid(torch.tensor(50.0))  # the crops still show the top-left patch: p(class 0)
    expected_values = [math.log(0.25) - math.log(probability), math.log(0.05) - math.log(probability)]
    assert run("saliency_metric", inputs)["saliency_metric"] == pytest.approx(sum(expected_values) / 2, abs=1e-5)


def test_inverse_mask_leakage():
    keep = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    keep[0, :8, :8] = True  # the evidence: the inverted mask hides it
    keep[1, 16:, 16:] = True  # not the evidence: the inverted mask shows it (leakage)
    assert run("leakage", toy_inputs(2, keep=keep)) == {"inverse_accuracy": 0.5}
    soft = keep.float() * 0.9
    assert run("leakage", toy_inputs(2, keep=soft)) == {"inverse_accuracy": 0.5}


# -- similarity, prediction, cost -----------------------------------------------------------------------------


def test_map_similarity_is_one_for_equal_maps_and_spearman_equals_scipy():
    rng = np.random.default_rng(1)
    maps = torch.tensor(rng.random((3, SIZE, SIZE)).round(1), dtype=torch.float32)
    values = run("map_similarity", toy_inputs(3, pixel_map=maps, reference_map=maps))
    assert values == pytest.approx({"spearman": 1.0, "ssim": 1.0, "hog_pearson": 1.0}, abs=1e-5)
    other = torch.tensor(rng.random((3, SIZE, SIZE)), dtype=torch.float32) + maps
    metric = make_metric("map_similarity", measures=["spearman"])
    per_image = metric.values(*toy_inputs(3, pixel_map=maps, reference_map=other))["spearman"]
    expected = [spearmanr(maps[i].ravel(), other[i].ravel())[0] for i in range(3)]
    np.testing.assert_allclose(per_image.numpy(), expected, rtol=1e-5)


def test_accuracy_kept_fraction_histogram_and_cost():
    keep = torch.zeros(4, SIZE, SIZE, dtype=torch.bool)
    keep[1, :16] = keep[2] = keep[3, :8] = True
    inputs = toy_inputs(4, keep=keep, labels=torch.tensor([0, 1, -1, 0]), evaluations=torch.tensor([1, 1, 3, 3]),
                        seconds=2.0, reference_seconds=0.5)  # fmt: skip
    assert run("accuracy", inputs) == {"accuracy": pytest.approx(2 / 3)}  # label -1 is unknown
    kept = make_metric("kept_fraction", bins=4)
    kept.update(*inputs)
    assert kept.compute() == {"kept_fraction": pytest.approx((0 + 0.5 + 1 + 0.25) / 4), "empty_masks": 0.25}
    assert kept.histogram()["counts"] == [1, 1, 1, 1]
    assert run("cost", inputs) == {"evaluations": 2.0, "seconds": 0.5, "forward_ratio": 4.0}


def test_a_soft_mask_keeps_its_mass_in_its_highest_pixels():
    soft = torch.full((2, SIZE, SIZE), 0.2)  # a budget spreads the mask thinly: nothing is above 0.5
    soft[0, :8] = 0.4  # image 0 puts more mass on its top quarter (mean 0.25)
    mask = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    mask[:, :8] = True
    keep = hard_keep(soft)
    assert keep.flatten(1).float().mean(1).tolist() == pytest.approx([0.25, 205 / 1024])  # round(0.2 * 1024) pixels
    assert keep[0, :8].all() and not keep[0, 8:].any()
    inputs = toy_inputs(2, keep=soft, mask=mask)
    assert run("kept_fraction", inputs)["kept_fraction"] == pytest.approx((0.25 + 205 / 1024) / 2)
    assert run("precision", inputs)["precision"] == pytest.approx(1.0)  # image 1: ties keep the first pixels, rows 0-6
    assert torch.equal(hard_keep(mask), mask)


# -- the common interface -------------------------------------------------------------------------------------


def test_streaming_over_batches_equals_one_batch():
    mask = torch.rand(4, SIZE, SIZE) < 0.2
    maps = torch.rand(4, SIZE, SIZE)
    whole = toy_inputs(4, pixel_map=maps, mask=mask)
    for name in ("relevance_mass", "pointing_game", "pxap"):
        once, twice = make_metric(name), make_metric(name)
        once.update(*whole)
        for part in (slice(0, 1), slice(1, 4)):
            twice.update(*toy_inputs(len(maps[part]), pixel_map=maps[part], mask=mask[part]))
        assert once.compute() == pytest.approx(twice.compute()), name


def test_registry_errors_directions_and_settings():
    with pytest.raises(ConfigError, match="unknown metric 'nope'; choose one of .*accuracy"):
        make_metric("nope")
    with pytest.raises(ConfigError, match="invalid parameters for metric 'rise'"):
        make_metric("rise", colour=3)
    with pytest.raises(ConfigError, match="mode must be one of insertion, deletion"):
        make_metric("rise", mode="sideways")
    with pytest.raises(ConfigError, match="unknown removal"):
        make_metric("rise", removal="paint")
    with pytest.raises(ValueError, match="metric 'relevance_mass' needs mask"):
        make_metric("relevance_mass").update(*toy_inputs())
    for name, cls in METRICS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric = cls()
        assert isinstance(metric.higher_is_better, bool), name
        assert set(metric.directions()) == set(metric.keys)
        json.dumps(metric.settings)
    assert make_metric("p2p_agreement", mode="deletion").directions() == {f"deletion@{t}": False for t in (5, 10, 20)}
