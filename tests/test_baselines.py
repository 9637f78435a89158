"""Baselines of the P2P comparison: known answers on constructed cases, a short training run of each trainable
baseline (checkpoint round trip, frozen REAL-X evaluator, shapes), and all of them through ``p2pvision benchmark``."""

from __future__ import annotations

import csv
import json

import lightning as L
import pytest
import torch
import yaml

from p2pvision.baselines import (
    PixelMaskClassifier,
    RealXModel,
    SoftMaskModel,
    even_pixel_mask,
    load_baseline,
    top_regions_mask,
)
from p2pvision.benchmark.config import benchmark_from_dict
from p2pvision.cli import main
from p2pvision.errors import ConfigError
from p2pvision.metrics.base import EvalBatch
from p2pvision.metrics.faithfulness import InverseMaskLeakage
from p2pvision.models.p2p import P2PConfig, P2PModel, save_p2p
from p2pvision.regions import GridPartitioner, partition_batch
from p2pvision.train.experiment import experiment_from_dict
from p2pvision.train.run import run_training

GRID = {"name": "grid", "grid": 4}
MODEL = {"classifier": "test_resnet", "selector_backbone": "test_resnet", "selector_levels": [1, 2],
         "head_channels": 8, "partition": GRID, "max_regions": 16, "fixed_tau": 0.25}  # fmt: skip
DATA = {"source": "semisynthetic", "task": "object", "image_size": 32, "n_train": 32, "n_val": 8, "n_test": 12}


def tiny_config(**changes) -> P2PConfig:
    return P2PConfig(num_classes=10, image_size=32, **{**MODEL, **changes})


# -- known answers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width", "fraction"), [(32, 32, 0.25), (64, 64, 0.4), (30, 50, 0.13), (7, 5, 1.0)])
def test_pixel_mask_keeps_exactly_the_requested_share(height, width, fraction):
    mask = even_pixel_mask(height, width, fraction)
    assert mask.shape == (height, width) and mask.dtype == torch.bool
    assert int(mask.sum()) == round(fraction * height * width)


def test_pixel_mask_is_evenly_spaced():
    quarter = even_pixel_mask(32, 32, 0.25)
    lattice = torch.zeros(32, 32, dtype=torch.bool)
    lattice[::2, ::2] = True
    assert torch.equal(quarter, lattice)  # 1/4: every other pixel of every other row
    mask = even_pixel_mask(64, 64, 0.4)  # 1638 pixels: every aligned 8x8 block keeps 25 or 26 of its 64
    per_block = mask.view(8, 8, 8, 8).sum(dim=(1, 3))
    assert set(per_block.flatten().tolist()) <= {25, 26}
    with pytest.raises(ConfigError, match="kept fraction"):
        even_pixel_mask(8, 8, 0.0)


def test_blackbox_pixel_classifier_sees_only_its_mask():
    model = PixelMaskClassifier(tiny_config()).eval()
    images = torch.rand(2, 3, 32, 32)
    outside = images.clone()
    outside[:, :, ~model.mask] = torch.rand_like(outside[:, :, ~model.mask])
    assert torch.allclose(model(images), model(outside))  # pixels outside the mask do not matter
    selection = model.explain(images)
    assert torch.allclose(selection.kept_fraction, torch.full((2,), 0.25, dtype=torch.float64))
    with pytest.raises(ConfigError, match="built for"):
        model(torch.rand(1, 3, 16, 16))


def test_posthoc_selection_keeps_the_top_regions_closest_to_the_fraction():
    regions = partition_batch(torch.rand(2, 3, 8, 8), GridPartitioner(4))  # 16 cells of 4 pixels
    scores = torch.stack([torch.arange(16.0), -torch.arange(16.0)])
    keep = top_regions_mask(scores, regions, torch.tensor([0.25, 0.5]))
    assert keep.flatten(1).float().mean(1).tolist() == [0.25, 0.5]
    assert set(regions[0][keep[0]].unique().tolist()) == {12, 13, 14, 15}  # the 4 highest scores
    assert set(regions[1][keep[1]].unique().tolist()) == set(range(8))
    # unequal areas: one region of 32 pixels, 8 of 4; top score on the big one; fraction 0.3 (19.2 px):
    uneven = regions.clone()
    uneven[uneven >= 8] = 8
    scores = torch.tensor([[1.0] * 8 + [9.0] + [100.0] * 7] * 2)  # empty slots 9..15 score highest: never kept
    keep = top_regions_mask(scores, uneven, 0.3)
    assert keep.flatten(1).sum(1).tolist() == [32, 32]  # 32 pixels are closer to 19.2 than 0 or 36
    assert not top_regions_mask(scores, uneven, 0.1).any()  # 6.4 pixels: none (0) is closer than 32


def test_soft_mask_leakage_is_accuracy_on_the_inverted_soft_mask():
    model = SoftMaskModel(tiny_config()).eval()
    images = torch.rand(4, 3, 32, 32)
    selection = model.explain(images)
    assert selection.keep.dtype == torch.float32 and selection.keep.shape == (4, 32, 32)
    assert 0 < float(selection.keep.min()) and float(selection.keep.max()) < 1  # continuous, never hard
    with torch.no_grad():
        inverse = model.classifier(images * (1 - selection.keep).unsqueeze(1)).argmax(1)  # black fill
    labels = torch.stack([inverse[0], inverse[1], (inverse[2] + 1) % 10, (inverse[3] + 1) % 10])
    metric = InverseMaskLeakage()
    metric.update(selection, EvalBatch(images, labels=labels, model=model.classifier))
    assert metric.compute()["inverse_accuracy"] == pytest.approx(0.5)


def test_realx_keeps_regions_with_probability_above_half():
    model = RealXModel(tiny_config()).eval()
    images = torch.rand(3, 3, 32, 32)
    selection = model.explain(images)
    regions = selection.regions
    assert regions.shape == (3, 32, 32) and selection.scores.shape == (3, 16)
    assert torch.equal(selection.keep, (selection.scores > 0.5).gather(1, regions.flatten(1)).view(3, 32, 32))
    expected = model.evaluator(images * selection.keep.unsqueeze(1)).argmax(1)
    assert torch.equal(selection.predicted, expected)


# -- training ---------------------------------------------------------------------------------------------------
class _Snapshot(L.Callback):
    """Keeps the module's weights after every epoch and the module itself at the end."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.states.append({key: value.detach().clone() for key, value in module.model.state_dict().items()})

    def on_train_end(self, trainer, module) -> None:
        self.module = module


def _changed(before: dict, after: dict, prefix: str) -> bool:
    return any(not torch.equal(before[key], after[key]) for key in before if key.startswith(prefix))


@pytest.mark.parametrize("mode", ["blackbox_pixel", "realx", "soft_mask"])
def test_trainable_baseline_trains_saves_and_loads(mode, tmp_path):
    experiment = {
        "name": mode,
        "data": DATA,
        "model": MODEL,
        "train": {"mode": mode, "epochs": 2, "warmup_epochs": 1, "batch_size": 16, "lr": 0.01,
                  "trainer": {"log_every_n_steps": 1}},  # fmt: skip
    }
    snapshot = _Snapshot()
    folder = run_training(experiment_from_dict(experiment), tmp_path / mode, callbacks=[snapshot], progress=False)
    model = load_baseline(folder)
    assert (
        model.kind == mode and json.loads((folder / "config.json").read_text())["experiment"]["train"]["mode"] == mode
    )
    images = torch.rand(5, 3, 32, 32)
    trained = snapshot.module.model.eval()
    loaded, original = model.explain(images), trained.explain(images)
    assert torch.allclose(loaded.probabilities, original.probabilities, atol=1e-6)
    assert loaded.keep.shape == (5, 32, 32) and loaded.probabilities.shape == (5, 10)
    warmed, final = snapshot.states
    rows = list(csv.DictReader((tmp_path / mode / "logs" / "metrics.csv").open()))
    losses = [float(row["train/loss"]) for row in rows if row.get("train/loss")]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    validation = json.loads((tmp_path / mode / "metrics.json").read_text())["validation"]
    assert {"val/acc", "val/kept", "val/precision"} <= set(validation)
    if mode == "blackbox_pixel":
        assert validation["val/kept"] == pytest.approx(0.25)
    elif mode == "realx":  # the evaluator learned in the warm-up and is frozen after it; the selector learns after
        assert not _changed(warmed, final, "classifier.") and _changed(warmed, final, "selector.")
    else:  # selector and classifier learn jointly after the warm-up
        assert _changed(warmed, final, "selector.") and _changed(warmed, final, "classifier.")


def test_unknown_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="train.mode: got 'comet'; allowed: .*realx"):  # before any work
        experiment_from_dict({"data": DATA, "model": MODEL, "train": {"mode": "comet"}})
    assert not (tmp_path / "x").exists()


# -- benchmark ---------------------------------------------------------------------------------------------------
def test_baselines_run_through_the_benchmark(tmp_path):
    torch.manual_seed(0)
    p2p = P2PConfig(num_classes=10, image_size=32, classifier="test_resnet", selector_backbone="test_resnet",
                    selector_levels=(1, 2), head_channels=8, max_regions=16, tau_grid=(0.25, 0.5, 1.0),
                    partition=GRID, initial_keep_logit=-0.2)  # fmt: skip
    save_p2p(P2PModel(p2p), tmp_path / "p2p")
    trained = {"model": MODEL, "train": {"epochs": 1, "batch_size": 16}}
    config = {
        "name": "tiny", "seeds": [0], "batch_size": 6, "examples": 2, "stored_images": 2,
        "hardware": {"accelerator": "cpu"},
        "metrics": ["accuracy", "kept_fraction", "cost", "precision", "leakage"],
        "datasets": {"object": {"data": DATA, "images": 6}},
        "methods": {
            "blackbox": {"kind": "blackbox", "classifier": "test_resnet", "train": {"epochs": 1, "batch_size": 16}},
            "p2p": {"kind": "p2p", "checkpoint": str(tmp_path / "p2p"), "tau": 0.5},
            "blackbox_pixel": {"kind": "blackbox_pixel", **trained},
            "realx": {"kind": "realx", **trained},
            "soft_mask": {"kind": "soft_mask", **trained, "fraction": 0.5},
            "grad_cam_top": {"kind": "posthoc_selection", "explainer": "grad_cam", "explains": "blackbox",
                             "match": "p2p", "params": {"partition": GRID}},
            "grad_cam_quarter": {"kind": "posthoc_selection", "explainer": "grad_cam", "explains": "blackbox",
                                 "fraction": 0.25, "params": {"partition": GRID}},
        },
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["benchmark", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    rows = {(row["method"], row["metric"]): float(row["mean"]) for row in csv.DictReader((out / "results.csv").open())}
    for method in ("blackbox_pixel", "realx", "soft_mask", "grad_cam_top", "grad_cam_quarter"):
        assert {(method, key) for key in ("accuracy", "kept_fraction", "precision", "inverse_accuracy")} <= set(rows)
    assert rows[("blackbox_pixel", "kept_fraction")] == pytest.approx(0.25)
    assert rows[("grad_cam_quarter", "kept_fraction")] == pytest.approx(0.25)
    assert rows[("grad_cam_top", "kept_fraction")] == pytest.approx(rows[("p2p", "kept_fraction")])  # grid = grid
    cells = json.loads((out / "results.json").read_text())["cells"]
    soft = next(cell for cell in cells if cell["method"] == "soft_mask")
    assert soft["method_settings"]["fraction"] == 0.5
    with pytest.raises(ConfigError, match="either fraction or match"):
        benchmark_from_dict(
            {
                **config,
                "methods": {
                    **config["methods"],
                    "bad": {"kind": "posthoc_selection", "explainer": "grad_cam", "explains": "blackbox"},
                },
            }
        )


def test_benchmark_trains_the_warm_up_once_and_every_arm_starts_from_it(tmp_path):
    from p2pvision.benchmark.methods import Context

    context = Context("object", DATA, None, seed=0, models_dir=tmp_path, progress=False)
    train = {"epochs": 2, "warmup_epochs": 1, "warmup_lr": 0.01, "lr": 0.001, "batch_size": 16}
    blackbox = context.train("classifier", {"classifier": "test_resnet"}, train)
    arms = {mode: context.train(mode, MODEL, train) for mode in ("p2p", "soft_mask", "blackbox_pixel")}
    warm = [folder for folder in tmp_path.iterdir() if folder.name.startswith("object-classifier")]
    assert len(warm) == 2  # the warm-up and the Blackbox that continues it; nothing else trained a classifier
    warm_model = next(f for f in warm if f / "model" != blackbox) / "model"
    assert json.loads((warm_model.parent / "metrics.json").read_text())["epochs"] == 1
    for mode, folder in arms.items():  # the remaining epoch at lr, from the warmed-up classifier
        settings = yaml.safe_load((folder.parent / "experiment.yaml").read_text())
        assert settings["model"]["classifier_weights"] == str(warm_model / "model.safetensors"), mode
        run = settings["train"]
        assert (run["epochs"], run["warmup_epochs"], run["lr"]) == (1, 0, 0.001), mode
    # The Blackbox resumed the warm-up's last checkpoint: its log starts at epoch 1, at the warm-up lr.
    blackbox_settings = yaml.safe_load((blackbox.parent / "experiment.yaml").read_text())["train"]
    assert (blackbox_settings["epochs"], blackbox_settings["lr"]) == (2, 0.01)
    epochs = {row["epoch"] for row in csv.DictReader((blackbox.parent / "logs" / "metrics.csv").open())}
    assert epochs == {"1"}
    assert json.loads((blackbox.parent / "metrics.json").read_text())["epochs"] == 2
    # REAL-X warms up its own evaluator on random masks.
    realx = yaml.safe_load((context.train("realx", MODEL, train).parent / "experiment.yaml").read_text())
    assert realx["train"]["warmup_epochs"] == 1 and realx["model"].get("classifier_weights") is None
    # Everything is reused when asked again.
    before = sorted(p.name for p in tmp_path.iterdir())
    assert context.train("p2p", MODEL, train) == arms["p2p"] and sorted(p.name for p in tmp_path.iterdir()) == before
