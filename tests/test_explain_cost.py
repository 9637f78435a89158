"""Budgets: every explainer states its cost per image before it runs (``planned_evaluations``, equal to the counted
``Explanation.evaluations``, or an upper bound where it stops early), reports evaluations as they happen
(``progress``), times one batch without counting it (``seconds_per_evaluation``), and keeps the papers' settings as
the ``paper`` preset beside CPU-friendly defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from p2pvision.cli.explain import PRESETS
from p2pvision.errors import ConfigError
from p2pvision.explain import EXPLAINERS, make_explainer, preset_settings
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner, make_partitioner, partition_batch

SIZE, CLASSES = 32, 10
CHEAP = {
    "shapley": {"num_permutations": 2},
    "kernel_shap": {"num_samples": 24},
    "lime": {"num_samples": 24},
    "sliding_patch": {"patch": 8, "stride": 6},
    "meaningful_perturbation": {"steps": 3, "mask_size": 8},
    "rise": {"num_masks": 24},
    "captum": {"n_steps": 4},
}


def build(name: str, **params):
    torch.manual_seed(0)
    vit = name == "rollout"
    model = create_classifier("test_vit" if vit else "test_resnet", num_classes=CLASSES,
                              **({"img_size": SIZE} if vit else {})).eval()  # fmt: skip
    return EXPLAINERS.create(name, model, **{"partitioner": GridPartitioner(4), **CHEAP.get(name, {}), **params})


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return images, partition_batch(images, make_partitioner("grid", grid=4))


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_planned_evaluations_are_the_counted_ones_and_progress_hears_each(name: str, batch) -> None:
    images, regions = batch
    explainer = build(name)
    planned = explainer.planned_evaluations(16, SIZE, SIZE)
    assert isinstance(planned, int) and planned >= 1, name
    heard: list[int] = []
    explainer.progress = heard.append
    result = explainer.explain(images, regions=regions)
    assert sum(heard) == result.evaluations.sum().item(), name  # every evaluation, as it happens
    if explainer.stops_early:
        assert (result.evaluations <= planned).all(), name
    else:
        assert result.evaluations.tolist() == [planned] * 3, name
    given = explainer.explain(images, target=2, regions=regions)  # a given target costs at most as much
    assert (given.evaluations <= planned).all(), name
    heard.clear()
    seconds = explainer.seconds_per_evaluation(images[0], regions[0])
    assert seconds > 0 and heard == [], name  # the probe is reported to no progress


def test_moxi_counts_a_full_order_exactly_and_early_stopping_stays_below(batch) -> None:
    images, regions = batch
    full = build("moxi", early_stop=False)
    assert not full.stops_early and full.planned_evaluations(16, SIZE, SIZE) == 1 + 16 * 17 // 2
    assert full.explain(images, regions=regions).evaluations.tolist() == [1 + 16 * 17 // 2] * 3
    stopped = build("moxi")  # early stopping is the default
    assert stopped.stops_early
    assert (stopped.explain(images, regions=regions).evaluations < 1 + 16 * 17 // 2).all()


def test_sliding_patch_plans_its_windows_on_any_image_size() -> None:
    images = torch.rand(1, 3, 30, 44, generator=torch.Generator().manual_seed(3))
    explainer = build("sliding_patch", patch=12, stride=7)
    result = explainer.explain(images)
    assert result.evaluations.item() == explainer.planned_evaluations(16, 30, 44) == 4 * 6 + 2


def test_kernel_shap_plans_the_enumeration_of_few_players() -> None:
    images = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    explainer = build("kernel_shap", partitioner=GridPartitioner(2), num_samples=100)
    assert explainer.planned_evaluations(4, SIZE, SIZE) == 3 + 2**4 - 2 == explainer.explain(images).evaluations.item()


def tiny_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()  # fmt: skip


CAPTUM = [
    ("IntegratedGradients", {}),
    ("IntegratedGradients", {"n_steps": 7, "internal_batch_size": 5}),
    ("InternalInfluence", {"layer": 2, "n_steps": 5}),
    ("Saliency", {}),
    ("InputXGradient", {}),
    ("GuidedBackprop", {}),
    ("Deconvolution", {}),
    ("LayerGradCam", {"layer": 2}),
    ("LayerGradientXActivation", {"layer": 2}),
    ("GuidedGradCam", {"layer": 2}),
    ("DeepLift", {}),
    ("GradientShap", {"baselines": "zeros"}),
    ("FeatureAblation", {}),
    ("ShapleyValueSampling", {"n_samples": 3}),
    ("Occlusion", {"sliding_window_shapes": (3, 8, 8), "strides": (3, 5, 5)}),
]


@pytest.mark.parametrize(("attribution", "options"), CAPTUM, ids=[f"{a}-{i}" for i, (a, _) in enumerate(CAPTUM)])
def test_captum_methods_plan_their_own_cost(attribution: str, options: dict) -> None:
    pytest.importorskip("captum")
    model = tiny_network()
    options = dict(options)
    if "layer" in options:
        options["layer"] = model[options["layer"]]
    if options.get("baselines") == "zeros":
        options["baselines"] = torch.zeros(2, 3, SIZE, SIZE)
    explainer = make_explainer("captum", model, attribution=attribution, partitioner=GridPartitioner(2), **options)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    heard: list[int] = []
    explainer.progress = heard.append
    result = explainer.explain(images)
    assert result.evaluations.tolist() == [explainer.planned_evaluations(4, SIZE, SIZE)] * 2
    assert sum(heard) == result.evaluations.sum().item()


def test_captum_methods_of_unknown_cost_say_so() -> None:
    pytest.importorskip("captum")
    assert make_explainer("captum", tiny_network(), attribution="Lime").planned_evaluations(4, SIZE, SIZE) is None


# The default budgets at 224 px (the README's cost table): every one about a minute or less on 2 CPU cores.
DEFAULT_BUDGETS = {
    "grad_cam": (196, 1),
    "grad_cam_pp": (196, 1),
    "rollout": (196, 1),
    "moxi": (49, 1 + 49 * 50 // 2),  # an upper bound: early stopping
    "moxi_minus": (196, 196 + 2),
    "shapley": (49, 3 + 4 * 48),
    "kernel_shap": (49, 3 + 200),
    "lime": (50, 1 + 200),
    "sliding_patch": (196, 13 * 13 + 2),
    "meaningful_perturbation": (196, 1 + 100),
    "rise": (196, 1 + 250),
    "captum": (196, 1 + 50),
}
PAPER_BUDGETS = {
    "moxi": (196, 1 + 196 * 197 // 2),
    "moxi_minus": (196, 196 + 2),
    "shapley": (196, 3 + 200 * 195),
    "kernel_shap": (196, 3 + 2048),
    "lime": (50, 1 + 500),
    "sliding_patch": (196, 62 * 62 + 2),
    "meaningful_perturbation": (196, 1 + 300),
    "rise": (196, 1 + 4000),
}


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_budgets_at_224_px(preset: str) -> None:
    budgets = {**DEFAULT_BUDGETS, **(PAPER_BUDGETS if preset == "paper" else {})}
    assert set(budgets) == set(EXPLAINERS.names())
    for name, (players, evaluations) in budgets.items():
        cls = EXPLAINERS.get(name)
        settings = preset_settings(name, preset)
        partition = settings.pop("partitioner").params if "partitioner" in settings else cls.default_partition
        grid = partition.get("grid")
        assert (grid[0] * grid[1] if isinstance(grid, list) else grid**2 if grid else 50) == players, name
        if name == "rollout" or name == "captum":
            continue  # a ViT only; Captum's own defaults
        explainer = cls(create_classifier("test_resnet"), **settings)
        assert explainer.planned_evaluations(players, 224, 224) == evaluations, name


def test_the_paper_preset_is_every_explainers_and_params_override_it() -> None:
    for name in EXPLAINERS.names():
        assert set(EXPLAINERS.get(name).presets) == set(PRESETS) - {"default"}, name
    model = create_classifier("test_resnet")
    paper = make_explainer("sp", model, preset="paper")
    assert (paper.patch, paper.stride) == (41, 3)
    assert make_explainer("sp", model, preset="paper", stride=8).stride == 8
    moxi = make_explainer("moxi", model, preset="paper")
    assert not moxi.early_stop and moxi.partitioner.params["grid"] == [14, 14]
    assert make_explainer("moxi", model).partitioner.params["grid"] == [7, 7]
    kept = make_explainer("moxi", model, preset="paper", partitioner=GridPartitioner(3))
    assert kept.partitioner.params["grid"] == [3, 3]  # a given partitioner wins over the preset's partition
    assert make_explainer("lime", model, preset="default").num_samples == 200
    with pytest.raises(ConfigError, match="no preset 'fast'; choose one of default, paper"):
        make_explainer("lime", model, preset="fast")
