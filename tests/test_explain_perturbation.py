"""LIME, sliding patch and meaningful perturbation on models with known answers, with classical and inpainting
fills; the result type (JSON, overlays) and the explainer registry."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.explain import LIME, MeaningfulPerturbation, SlidingPatch, explainer_names, make_explainer
from p2pvision.explain.occlusion import window_starts
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner, partition_batch
from p2pvision.removal import BlackFill, TeleaInpaint
from p2pvision.report.explanation_figures import explanation_figure


class WeightedRed(nn.Module):
    """Two classes; logit 1 is a fixed per-pixel weighting of the red channel (additive over pixels)."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.weight = torch.linspace(-1, 2, size * size).view(size, size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logit = (images[:, 0] * self.weight).sum(dim=(1, 2))
        return torch.stack([torch.zeros_like(logit), logit], dim=1)


def test_lime_recovers_an_additive_model_and_weights_samples_by_cosine_kernel() -> None:
    images = torch.rand(2, 3, 16, 16)
    regions = partition_batch(images, GridPartitioner(4))
    model = WeightedRed()
    result = LIME(model, BlackFill(), GridPartitioner(4), num_samples=200, alpha=1e-8, value="logit").explain(
        images, 1, regions
    )
    contribution = torch.zeros(2, 16)
    for b in range(2):
        for k in range(16):
            contribution[b, k] = (images[b, 0] * model.weight)[regions[b] == k].sum()
    assert torch.allclose(result.scores, contribution, atol=1e-3)
    assert result.evaluations.sum() == 2 * 200
    assert torch.equal(result.order[:, 0], contribution.argmax(1))


def test_lime_default_partition_is_slic_50() -> None:
    explainer = LIME(create_classifier("test_resnet"), "grey")
    assert explainer.partitioner.params["n_segments"] == 50 and explainer.partitioner.params["compactness"] == 30
    assert explainer.value == "prob"


def test_sliding_patch_equals_a_window_loop() -> None:
    images = torch.rand(1, 3, 16, 16)
    model = WeightedRed()
    result = SlidingPatch(model, BlackFill(), GridPartitioner(4), patch=5, stride=4, value="logit").explain(images, 1)
    assert window_starts(16, 5, 4) == [0, 4, 8, 11]
    total, covered = torch.zeros(16, 16), torch.zeros(16, 16)
    contribution = images[0, 0] * model.weight
    for top in (0, 4, 8, 11):
        for left in (0, 4, 8, 11):
            total[top : top + 5, left : left + 5] += contribution[top : top + 5, left : left + 5].sum()
            covered[top : top + 5, left : left + 5] += 1
    assert torch.allclose(result.pixel_map[0], total / covered, atol=1e-4)
    assert result.evaluations.sum() == 1 + 16  # the full image and the windows (target given: no target pass)


def test_sliding_patch_with_inpainting_runs_per_window() -> None:
    model = create_classifier("test_resnet")
    result = SlidingPatch(model, TeleaInpaint(), patch=16, stride=16).explain(torch.rand(2, 3, 32, 32))
    assert result.params["removal"]["name"] == "telea" and result.evaluations.sum() == 2 + 2 + 2 * 4
    assert result.removal_seconds > 0


def _red_square_case() -> tuple[torch.Tensor, nn.Module]:
    """A black image with a red square, the only evidence for class 1 of a linear model."""
    images = torch.zeros(1, 3, 16, 16)
    images[0, 0, 4:8, 4:8] = 1.0  # the only evidence for class 1
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, -2.0]))
        model[1].weight[1].view(3, 16, 16)[0] = 0.25  # logit 1 - logit 0 = 2: p = 0.88, not saturated
    return images, model


def test_meaningful_perturbation_deletes_the_evidence() -> None:
    images, model = _red_square_case()
    explainer = MeaningfulPerturbation(model, BlackFill(), mask_size=4, steps=60, lr=0.2, jitter=0, l1=1e-3, tv=0.0)
    result = explainer.explain(images, 1)
    mask = result.extras["mask"][0]
    # The evidence cell is deleted; cells whose upsampled mask never reaches the evidence are kept (L1 term).
    assert mask[1, 1] < 0.2 and mask[3, 3] > 0.9 and mask[3, 0] > 0.9 and mask[0, 3] > 0.9
    assert result.evaluations.sum() == 60 + 1  # the steps and the prediction on the full image (target given)
    assert ((result.pixel_map >= 0) & (result.pixel_map <= 1)).all()


def test_meaningful_perturbation_with_inpainting_and_jitter_runs() -> None:
    model = create_classifier("test_resnet")
    result = MeaningfulPerturbation(model, "telea", steps=3).explain(torch.rand(1, 3, 32, 32))
    assert result.evaluations.sum() == 1 + 3 and result.params["removal"]["name"] == "telea"
    with pytest.raises(ConfigError, match="token dropping"):
        MeaningfulPerturbation(create_classifier("test_vit"), "token_drop")


def test_results_serialise_and_render() -> None:
    model = create_classifier("test_resnet")
    images = torch.rand(2, 3, 32, 32)
    result = make_explainer("moxi", model, removal="black", partitioner=GridPartitioner(2), early_stop=False).explain(
        images
    )
    record = json.loads(json.dumps(result.to_json(model.class_names)))
    assert record["method"] == "moxi" and len(record["images"]) == 2
    first = record["images"][0]
    assert len(first["scores"]) == 4 and sorted(first["order"]) == [0, 1, 2, 3]
    assert first["cost"]["evaluations"] == 1 + 4 + 3 + 2 + 1
    assert first["params"]["removal"] == {"name": "black"} and first["params"]["partition"]["name"] == "grid"
    assert first["target_name"] == model.class_names[first["target"]]
    figure = explanation_figure(images, [result], 1, model.class_names, boundaries=True)
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert len(panels) == 2 and panels[1].get_title().startswith("moxi")  # the input and the method's map
    assert panels[1].images[1].get_array().shape == (32, 32)  # the map over the image, at its size
    figure.clear()


def test_registry() -> None:
    model = create_classifier("test_resnet")
    assert {"moxi", "moxi_minus", "shapley", "kernel_shap", "lime", "sliding_patch"} <= set(explainer_names())
    assert isinstance(make_explainer("sp", model), SlidingPatch)
    with pytest.raises(ConfigError, match="unknown explainer"):
        make_explainer("saliency", model)
    with pytest.raises(ConfigError, match="invalid parameters"):
        make_explainer("lime", model, samples=3)


def test_meaningful_perturbation_with_an_inpainting_fill_deletes_the_evidence() -> None:
    """MP-G: the fill of every partly removed pixel (m < 1), blended by the mask, from m = 0.9; Telea fills the red
    square from its black surroundings, so the evidence is deleted as with the black fill. (From m = 1 with the
    hole m < 0.5 the hole stayed empty, the fill equalled the image and the mask never moved.)"""
    images, model = _red_square_case()
    explainer = MeaningfulPerturbation(model, TeleaInpaint(), mask_size=4, steps=60, lr=0.2, jitter=0, l1=1e-3, tv=0.0)
    assert explainer.init == 0.9 and MeaningfulPerturbation(model, BlackFill()).init == 1.0
    result = explainer.explain(images, 1)
    mask = result.extras["mask"][0]
    assert mask[1, 1] < 0.2 and mask[3, 3] > 0.9 and mask[3, 0] > 0.9 and mask[0, 3] > 0.9
    assert result.params["init"] == 0.9 and result.removal_seconds > 0
    with pytest.raises(ConfigError, match="init"):
        MeaningfulPerturbation(model, TeleaInpaint(), init=0.0)
