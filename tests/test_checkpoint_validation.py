"""Checkpoints are validated on load: corrupt or truncated weights, malformed config.json, wrong shapes and NaN/Inf
weights each give one line naming the checkpoint and the fix (exit code 2 from the CLI); saved files get the usual
permissions; JSON files never hold NaN."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from p2pvision.baselines import PixelMaskClassifier, load_baseline, save_baseline
from p2pvision.cache import write_json
from p2pvision.cli import main
from p2pvision.errors import WeightsError
from p2pvision.models.backbones import create_classifier, load_classifier, save_classifier
from p2pvision.models.p2p import P2PConfig, P2PModel, load_p2p, save_p2p

TINY = {"num_classes": 4, "image_size": 32, "classifier": "test_resnet", "selector_backbone": "test_resnet",
        "selector_levels": (1, 2), "head_channels": 8, "max_regions": 16,
        "partition": {"name": "grid", "grid": 4}}  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_p2p(P2PModel(P2PConfig(**TINY)), tmp_path_factory.mktemp("ckpt") / "model")


def broken_copy(saved: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    return folder


def config_with(folder: Path, change) -> None:
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(meta)))


CASES = {
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:500]),
                          "is not a readable safetensors file .*truncated or corrupt"),
    "empty weights": (lambda f: (f / "model.safetensors").write_bytes(b""), "truncated or corrupt"),
    "garbled weights": (lambda f: (f / "model.safetensors").write_bytes(os.urandom(4000)), "truncated or corrupt"),
    "config is a list": (lambda f: (f / "config.json").write_text("[1, 2]"), "holds a JSON list, not an object"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{oops"), "is not valid JSON"),
    "config misses a key": (lambda f: config_with(f, lambda m: {**m, "config": {k: v for k, v in m["config"].items()
                                                                               if k != "num_classes"}}),
                            "has an invalid setting"),
    "image size 0": (lambda f: config_with(f, lambda m: {**m, "config": {**m["config"], "image_size": 0}}),
                     "has an invalid setting: .*image_size"),
    "wrong shapes": (lambda f: config_with(f, lambda m: {**m, "config": {**m["config"], "head_channels": 16}}),
                     "do not fit the architecture"),
    "weights file missing": (lambda f: (f / "model.safetensors").unlink(), "is not a P2P checkpoint"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_p2p_checkpoint_is_one_line_naming_it(case: str, saved: Path, tmp_path: Path, capsys) -> None:
    folder = broken_copy(saved, tmp_path)
    damage, message = CASES[case]
    damage(folder)
    with pytest.raises(WeightsError, match=message) as error:
        load_p2p(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (200, 10, 10)).save(image)
    assert main(["predict", str(folder), str(image), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("p2pvision: error:") and "Traceback" not in err[0]


def test_nan_weights_are_refused_in_every_checkpoint_kind(saved: Path, tmp_path: Path) -> None:
    folder = broken_copy(saved, tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    name = next(key for key, value in weights.items() if value.is_floating_point())
    weights[name] = torch.full_like(weights[name], math.nan)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "p2pvision-p2p"})
    with pytest.raises(WeightsError, match=f"NaN or infinite weights \\({name}\\): its training diverged"):
        load_p2p(folder)

    classifier = create_classifier("test_resnet", num_classes=3, class_names=["a", "b", "c"])
    with torch.no_grad():
        next(classifier.parameters()).fill_(math.inf)
    with pytest.raises(WeightsError, match="NaN or infinite weights"):
        load_classifier(save_classifier(classifier, "test_resnet", tmp_path / "classifier"))

    baseline = PixelMaskClassifier(P2PConfig(**{**TINY, "fixed_tau": 0.25}))
    with torch.no_grad():
        next(baseline.parameters()).fill_(math.nan)
    with pytest.raises(WeightsError, match="NaN or infinite weights"):
        load_baseline(save_baseline(baseline, tmp_path / "baseline"))


def test_saved_files_have_the_usual_permissions_and_json_is_strict(saved: Path, tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json"):
        assert (saved / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    write_json(tmp_path / "values.json", {"nan": math.nan, "inf": [math.inf, 1.5]})
    assert json.loads((tmp_path / "values.json").read_text()) == {"inf": [None, 1.5], "nan": None}
