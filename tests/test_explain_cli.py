"""The ``explain`` subcommand: parses, explains image files, writes overlays and JSON atomically, reports errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from p2pvision.cli.explain import add_explain_command
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p2pvision")
    add_explain_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    paths = []
    for name, array in (("cat", data.chelsea()), ("coffee", data.coffee())):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.asarray(Image.fromarray(array).resize((48, 40)))).save(path)
        paths.append(path)
    return paths


def test_explain_writes_overlays_and_json(tmp_path: Path, photos: list[Path], capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    options = ["--method", "moxi", "--removal", "telea", "--grid", "2", "--param", "early_stop=true"]
    code = run(
        ["explain", *map(str, photos), *options, "--model", "test_resnet", "--weights", "none", "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "[2/2] coffee.png" in printed and str(out.resolve()) in printed
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem}.moxi.{suffix}" for stem in ("cat", "coffee") for suffix in ("json", "pdf", "png", "safetensors")
    ]
    record = json.loads((out / "cat.moxi.json").read_text())
    saved = Explanation.load(out / "cat.moxi.safetensors")  # the full explanation loads back
    assert saved.method == "moxi" and saved.pixel_map.shape == (1, 160, 160) and saved.regions.max() == 3
    assert saved.scores[0].tolist() == pytest.approx(record["scores"])
    assert record["params"]["removal"]["name"] == "telea" and record["params"]["early_stop"] is True
    assert record["params"]["partition"]["grid"] == [2, 2] and len(record["scores"]) == 4
    assert record["image"] == str(photos[0]) and record["cost"]["evaluations"] >= 1 + 4
    assert Image.open(out / "cat.moxi.png").size[0] > 2 * 2.6 * 300 * 0.9  # two panels at print resolution
    assert (out / "cat.moxi.pdf").read_bytes().startswith(b"%PDF")


def test_explain_compares_several_methods_in_one_figure(tmp_path: Path, photos: list[Path], capsys) -> None:
    out = tmp_path / "out"
    options = ["--method", "grad_cam,sp", "--grid", "2", "--param", "patch=20", "--param", "stride=20"]
    code = run(["explain", str(photos[0]), *options, "--model", "test_resnet", "--weights", "none", "--out",
                str(out), "--formats", "png,svg"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    names = {path.name for path in out.iterdir()}
    assert {"cat.compare.png", "cat.compare.svg", "cat.grad_cam.png", "cat.sliding_patch.png"} <= names
    assert json.loads((out / "cat.sliding_patch.json").read_text())["params"]["patch"] == 20
    assert "patch" not in json.loads((out / "cat.grad_cam.json").read_text())["params"]  # only to the method taking it
    with Image.open(out / "cat.compare.png") as figure, Image.open(out / "cat.grad_cam.png") as single:
        assert figure.width > single.width * 1.3  # one more panel
    with pytest.raises(ConfigError, match="--param bogus: none of grad_cam, sliding_patch takes it"):
        run(["explain", str(photos[0]), "--method", "grad_cam,sp", "--param", "bogus=1", "--out", str(out)])


def test_explain_with_the_default_offline_model(tmp_path: Path, photos: list[Path]) -> None:
    out = tmp_path / "out"
    assert run(["explain", str(photos[0]), "--method", "grad_cam", "--out", str(out)]) == 0
    record = json.loads((out / "cat.grad_cam.json").read_text())
    assert record["input_size"] == [224, 224] and len(record["scores"]) == 196 and record["cost"]["evaluations"] == 1


def test_explain_reports_user_errors(tmp_path: Path, photos: list[Path]) -> None:
    common = ["--model", "test_resnet", "--out", str(tmp_path)]
    with pytest.raises(ConfigError, match="--weights is required"):
        run(["explain", str(photos[0]), "--method", "lime", *common])
    with pytest.raises(ConfigError, match="does not remove regions"):
        run(["explain", str(photos[0]), "--method", "grad_cam", "--removal", "black", "--weights", "none", *common])
    with pytest.raises(ConfigError, match="invalid parameters"):
        run(["explain", str(photos[0]), "--method", "lime", "--weights", "none", "--param", "samples=3", *common])
    assert run(["explain", str(tmp_path / "missing.png"), "--method", "sp", "--weights", "none", *common]) == 2
    with pytest.raises(SystemExit):
        run(["explain", str(photos[0]), "--method", "lime", "--grid", "4", "--superpixels", "10"])


def test_explain_states_each_methods_cost_and_shows_progress(tmp_path: Path, photos: list[Path], capsys) -> None:
    out = tmp_path / "out"
    common = ["--model", "test_resnet", "--weights", "none", "--out", str(out), "--formats", "png"]
    options = ["--method", "moxi,sp,grad_cam", "--grid", "3", "--param", "early_stop=false", "--param", "patch=40",
               "--param", "stride=40"]  # fmt: skip
    assert run(["explain", *map(str, photos), *options, *common]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # before each method's first image: its evaluations per image and seconds from a timing probe, once per method
    assert "moxi: 46 model evaluations per image (about " in printed and "timing probe of 16 images" in printed
    assert "sliding_patch: 18 model evaluations per image (about " in printed
    assert "grad_cam: 1 model evaluation (forward+backward) per image" in printed
    assert printed.count("moxi: 46 model evaluations per image") == 1
    # and what they then counted
    for name, evaluations in (("moxi", 46), ("sliding_patch", 18), ("grad_cam", 1)):
        assert json.loads((out / f"coffee.{name}.json").read_text())["cost"]["evaluations"] == evaluations
    assert "cat.png moxi" in captured.err and "coffee.png sliding_patch" in captured.err  # progress bars
    quiet = ["--method", "moxi", "--grid", "2", "--quiet"]
    assert run(["explain", str(photos[0]), *quiet, *common]) == 0
    assert "cat.png moxi" not in capsys.readouterr().err


def test_explain_says_how_to_make_a_slow_method_cheaper(tmp_path: Path, photos: list[Path], capsys, monkeypatch):
    monkeypatch.setattr("p2pvision.cli.explain.SLOW_SECONDS", 0.0)
    common = ["--model", "test_resnet", "--weights", "none", "--out", str(tmp_path), "--formats", "png", "--quiet"]
    options = ["--method", "moxi,lime", "--grid", "3", "--param", "early_stop=false", "--param", "num_samples=20"]
    assert run(["explain", str(photos[0]), *options, *common]) == 0
    printed = capsys.readouterr().out
    assert ("moxi: more than 0 s per image here; cheaper: --param early_stop=true, a coarser --grid or fewer "
            "--superpixels (now 9 players; MoXI costs their square)") in printed
    assert "lime: more than 0 s per image here; cheaper: fewer --param num_samples (now 20)" in printed
    assert "num_samples (now 20), a coarser" not in printed  # LIME's cost does not depend on its players


def test_explain_preset_paper_and_what_overrides_it(tmp_path: Path, photos: list[Path]) -> None:
    common = ["--model", "test_resnet", "--weights", "none", "--out", str(tmp_path), "--formats", "png", "--quiet"]
    assert run(["explain", str(photos[0]), "--method", "moxi_minus", "--preset", "paper", *common]) == 0
    minus = json.loads((tmp_path / "cat.moxi_minus.json").read_text())
    assert minus["params"]["partition"]["grid"] == [14, 14] and minus["cost"]["evaluations"] == 196 + 2
    options = ["--method", "moxi", "--preset", "paper", "--grid", "2", "--param", "mode=deletion"]
    assert run(["explain", str(photos[0]), *options, *common]) == 0  # --grid and --param win over the preset
    moxi = json.loads((tmp_path / "cat.moxi.json").read_text())
    assert moxi["params"]["partition"]["grid"] == [2, 2] and moxi["params"]["mode"] == "deletion"
    assert moxi["params"]["early_stop"] is False and moxi["cost"]["evaluations"] == 1 + 4 * 5 // 2  # the paper's
    with pytest.raises(SystemExit):
        run(["explain", str(photos[0]), "--method", "moxi", "--preset", "fast"])
