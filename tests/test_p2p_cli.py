"""p2pvision train / evaluate / predict end to end on a tiny model."""

import dataclasses
import json

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from p2pvision.cli import main
from p2pvision.models.p2p import P2PModel, load_p2p, save_p2p

TINY = {
    "name": "tiny-cli",
    "data": {"source": "semisynthetic", "image_size": 32, "n_train": 32, "n_val": 16, "n_test": 24},
    "model": {
        "classifier": "test_resnet",
        "selector_backbone": "test_resnet",
        "selector_levels": [1, 2],
        "head_channels": 8,
        "partition": {"name": "slic", "n_segments": 16, "compactness": 20.0},
        "max_regions": 16,
    },
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.001, "val_tau_grid": [0.5, 1.0]},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(config), "--out", str(folder / "run")]) == 0
    return folder / "run" / "model"


def test_evaluate_prints_and_writes_every_metric(checkpoint, tmp_path, capsys):
    trained = load_p2p(checkpoint)
    additive_model = P2PModel(dataclasses.replace(trained.config, tau_conditioning="additive"))
    additive = save_p2p(additive_model, tmp_path / "additive")
    assert main(["evaluate", str(checkpoint), "--delta", "0.5", "0.99", "--tau", "0.3", "--compare", str(additive),
                 "--out", str(tmp_path / "e")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "test split, 24 images" in printed and "precision↑" in printed and "deletion@10↓" in printed
    assert "additive tau=0.3 " in printed
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())["report"]
    settings = ["delta=0.5", "delta=0.99", "tau=0.3"]
    assert set(report) == {*settings, *(f"additive {setting}" for setting in settings)}
    for row in report.values():
        for key in ("accuracy", "kept_fraction", "precision", "iou", "pxap", "insertion@5", "deletion@20"):
            assert 0.0 <= row[key] <= 1.0, key
        assert row["images"] == 24 and 0.0 <= row["empty_masks"] <= 1.0
    assert report["delta=0.99"]["tau"] >= report["delta=0.5"]["tau"]  # a stricter certainty never needs less budget
    assert report["tau=0.3"]["tau"] == pytest.approx(0.3) and report["additive tau=0.3"]["tau"] == pytest.approx(0.3)
    assert (tmp_path / "e" / "evaluation.csv").read_text().startswith("setting,accuracy")
    with Image.open(tmp_path / "e" / "frontier.png") as plot:  # the accuracy-sparsity frontier, a line per model
        assert plot.width > 1000
    assert (tmp_path / "e" / "frontier.pdf").read_bytes().startswith(b"%PDF")
    assert main(["evaluate", str(checkpoint), "--delta", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_evaluate_and_the_benchmark_give_the_same_numbers(checkpoint, tmp_path):
    assert main(["evaluate", str(checkpoint), "--delta", "0.99", "--images", "12", "--out", str(tmp_path / "e")]) == 0
    evaluated = json.loads((tmp_path / "e" / "evaluation.json").read_text())["report"]["delta=0.99"]
    assert evaluated["images"] == 12 and (tmp_path / "e" / "report.html").is_file()
    metrics = ["accuracy", "kept_fraction", "tau", "precision", "iou", {"name": "pxap", "normalise": "none"},
               {"name": "p2p_agreement", "mode": "deletion"}]  # fmt: skip
    config = {"name": "same", "seeds": [0], "batch_size": 5, "metrics": metrics,
              "datasets": {"test": {"data": TINY["data"], "images": 12}},
              "methods": {"p2p": {"kind": "p2p", "checkpoint": str(checkpoint), "delta": 0.99}}}  # fmt: skip
    path = tmp_path / "same.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["benchmark", "--config", str(path), "--out", str(tmp_path / "b"), "--quiet"]) == 0
    cell = json.loads((tmp_path / "b" / "cells" / "test" / "p2p" / "seed0.json").read_text())
    assert cell["values"].keys() <= evaluated.keys()
    for key, value in cell["values"].items():
        assert value == pytest.approx(evaluated[key], abs=1e-9), key


def test_predict_writes_figures_and_json(checkpoint, tmp_path, capsys):
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(photo)
    gray = tmp_path / "gray.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50)) * 255).astype(np.uint8)).save(gray)
    out = tmp_path / "pred"
    assert main(["predict", str(checkpoint), str(photo), str(gray), "--out", str(out)]) == 0
    records = json.loads((out / "predictions.json").read_text())
    assert [r["file"] for r in records] == [str(photo), str(gray)]
    for record in records:
        assert record["class"] in TINY_CLASSES and 0 <= record["kept_fraction"] <= 1
        assert Image.open(record["figure"]).size[0] > 500
    assert "coffee.jpg" in capsys.readouterr().out


def test_predict_bad_file_is_a_one_line_error(checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert main(["predict", str(checkpoint), str(broken), "--out", str(tmp_path / "p")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert last.startswith("p2pvision: error: cannot load image") and "broken.png" in last


TINY_CLASSES = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def test_demo_trains_evaluates_and_explains(tmp_path, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({**TINY, "name": "demo-test"}))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "Results in" in printed and "| setting |" in printed
    for name in ("metrics.md", "metrics.json", "contact_sheet.png", "predictions/predictions.json"):
        assert (tmp_path / "demo" / name).is_file(), name
    assert len(list((tmp_path / "demo" / "predictions").glob("*.png"))) == 8
    assert main(["demo", "--out", str(tmp_path / "demo"), "--config", str(config)]) == 0  # second run reuses
    assert "reusing the model" in capsys.readouterr().out


def test_explain_the_classifier_of_a_p2p_checkpoint(checkpoint, tmp_path, capsys):
    photo = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(photo)
    out = tmp_path / "explained"
    args = ["explain", "--method", "grad_cam", "--checkpoint", str(checkpoint), str(photo), "--out", str(out)]
    assert main(args) == 0
    record = json.loads((out / "coffee.grad_cam.json").read_text())
    assert record["input_size"] == [32, 32] and record["target_name"] in TINY_CLASSES
