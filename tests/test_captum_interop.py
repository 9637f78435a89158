"""Interop with Captum both ways: any Captum attribution is scored by this project's metrics in one call, and any
Captum method runs as an explainer (``make_explainer("captum", ...)``), in the benchmark too: Captum's
IntegratedGradients appears in a benchmark report beside MoXI."""

from __future__ import annotations

import csv
import sys

import pytest
import torch
import yaml
from captum.attr import IntegratedGradients, LayerGradCam
from torch import nn

from p2pvision.benchmark.config import load_benchmark
from p2pvision.benchmark.engine import run_benchmark
from p2pvision.errors import ConfigError
from p2pvision.explain import make_explainer
from p2pvision.explanation import Explanation
from p2pvision.metrics import score
from p2pvision.regions import GridPartitioner

SIZE = 32


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


def test_captum_integrated_gradients_as_an_explainer_equals_captum(images: torch.Tensor) -> None:
    model = tiny_model()
    target = torch.tensor([0, 3, 4])
    explainer = make_explainer("captum", model, attribution="IntegratedGradients", n_steps=8, batch_size=2)
    explanation = explainer.explain(images, target=target)
    reference = IntegratedGradients(model).attribute(images, target=target, n_steps=8).sum(1)
    assert reference.abs().max() > 0
    assert (explanation.pixel_map - reference).abs().max() <= 1e-5 * reference.abs().max()  # measured: 0
    assert explanation.evaluations.tolist() == [9, 9, 9]  # 8 steps and the prediction
    assert explanation.params["attribution"] == "IntegratedGradients" and explanation.params["n_steps"] == 8
    assert torch.equal(explanation.predicted, model(images).argmax(1))


def test_captum_layer_and_perturbation_methods_as_explainers(images: torch.Tensor) -> None:
    model = tiny_model()
    cam = make_explainer("captum", model, attribution="LayerGradCam", layer=model[2], relu_attributions=True)
    ours = make_explainer("gradcam", model, layer=model[2]).explain(images, target=1)
    assert torch.allclose(cam.explain(images, target=1).pixel_map, ours.pixel_map, atol=1e-6)
    ablation = make_explainer("captum", model, attribution="FeatureAblation", partitioner=GridPartitioner(2))
    result = ablation.explain(images, target=1)  # the explainer's regions are Captum's feature mask
    assert result.evaluations.tolist() == [6, 6, 6]  # the prediction, the full image, 4 regions
    assert (result.pixel_map[:, :16, :16] == result.pixel_map[:, :1, :1]).all()  # one value per region
    with pytest.raises(ConfigError, match="did you mean 'IntegratedGradients'"):
        make_explainer("captum", model, attribution="IntegratedGradiants")
    with pytest.raises(
        ConfigError,
        match="n_step: got 3; not an option of Captum's IntegratedGradients \\(did you mean 'n_steps'\\?\\); known: "
        "baselines",
    ):
        make_explainer("captum", model, n_step=3)
    with pytest.raises(ConfigError, match="n_steps: got -2; must be an integer >= 1"):
        make_explainer("captum", model, n_steps=-2)
    with pytest.raises(ConfigError, match="multiply_by_inputs: got 'yes'; must be true or false"):
        make_explainer("captum", model, multiply_by_inputs="yes")
    with pytest.raises(ConfigError, match="target: got 3; given to explain"):
        make_explainer("captum", model, target=3)
    with pytest.raises(ConfigError, match="attributes to a layer: give layer="):
        make_explainer("captum", model, attribution="LayerGradCam")


def test_without_captum_the_explainer_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ConfigError, match="^the captum explainer needs Captum: pip install captum$"):
        make_explainer("captum", tiny_model())


def test_captum_attributions_are_scored_in_one_call(images: torch.Tensor) -> None:
    model = tiny_model()
    target = torch.tensor([0, 3, 4])
    attributions = IntegratedGradients(model).attribute(images, target=target, n_steps=8)
    metrics = [{"name": "rise", "mode": "insertion", "steps": 4}, {"name": "rise", "mode": "deletion", "steps": 4},
               "saliency_metric", "pointing_game"]  # fmt: skip
    mask = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    mask[:, 8:24, 8:24] = True
    scores = score(attributions, model, images, target, metrics=metrics, mask=mask)
    assert set(scores) >= {"rise_insertion_auc", "rise_deletion_auc", "saliency_metric", "pointing_game"}
    assert all(isinstance(value, float) for value in scores.values())
    # the same numbers as scoring the explainer's explanation of the same map
    explained = make_explainer("captum", model, attribution="IntegratedGradients", n_steps=8).explain(images, target)
    assert score(explained, model, images, metrics=metrics, mask=mask) == pytest.approx(scores)
    # a (B,H,W) map works too, and the default metrics are RISE insertion and deletion
    assert set(score(attributions.sum(1), model, images, target)) == {"rise_insertion_auc", "rise_deletion_auc"}
    with pytest.raises(ValueError, match=r"attributions must be \(3, C, H, W\) or \(3, H, W\)"):
        score(attributions[:2], model, images, target)
    with pytest.raises(ValueError, match="metric 'accuracy' needs labels"):
        score(attributions, model, images, target, metrics=["accuracy"])


def test_a_layer_attribution_is_upsampled_like_grad_cam(images: torch.Tensor) -> None:
    model = tiny_model()
    layer = LayerGradCam(model, model[2]).attribute(images, target=2, relu_attributions=True)  # (B,1,16,16)
    explanation = Explanation.from_attributions(layer, model, images, target=2, method="captum-gradcam")
    ours = make_explainer("gradcam", model, layer=model[2]).explain(images, target=2)
    assert explanation.pixel_map.shape == (3, SIZE, SIZE) and explanation.method == "captum-gradcam"
    assert torch.allclose(explanation.pixel_map, ours.pixel_map, atol=1e-6)
    assert torch.equal(explanation.target, torch.tensor([2, 2, 2])) and explanation.evaluations is None
    assert torch.allclose(explanation.scores, ours.scores, atol=1e-6) and torch.equal(explanation.order, ours.order)


def test_captum_integrated_gradients_appears_in_a_benchmark_report_beside_moxi(tmp_path) -> None:
    config = {
        "name": "interop", "seeds": [0], "batch_size": 2, "examples": 2, "stored_images": 2,
        "hardware": {"accelerator": "cpu"},
        "metrics": ["cost", {"name": "rise", "mode": "deletion", "steps": 4}],
        "datasets": {"photos": {"data": {"source": "photos", "image_size": SIZE, "names": ["astronaut", "coffee"]}}},
        "methods": {
            "classifier": {"kind": "blackbox", "classifier": "test_resnet"},
            "moxi": {"kind": "explainer", "explainer": "moxi", "explains": "classifier",
                     "params": {"partition": {"name": "grid", "grid": 2}}},
            "integrated_gradients": {"kind": "explainer", "explainer": "captum", "explains": "classifier",
                                     "params": {"attribution": "IntegratedGradients", "n_steps": 4}},
        },
    }  # fmt: skip
    path = tmp_path / "interop.yaml"
    path.write_text(yaml.safe_dump(config))
    results = run_benchmark(load_benchmark(path), tmp_path / "out", progress=False)
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    methods = {row["method"] for row in rows}
    assert {"moxi", "integrated_gradients"} <= methods
    cost = {row["method"]: float(row["mean"]) for row in rows if row["metric"] == "evaluations"}
    assert cost["integrated_gradients"] == 5  # 4 steps and the prediction, per image
    report = (tmp_path / "out" / "report.html").read_text()
    assert "integrated_gradients" in report and "moxi" in report
    assert results is not None


def test_the_shipped_captum_benchmark_config_loads() -> None:
    config = load_benchmark("captum")
    assert config.methods["integrated_gradients"].spec["params"]["attribution"] == "IntegratedGradients"
    assert {"moxi", "integrated_gradients"} <= set(config.methods)
