"""Bad inputs among good ones: every command that takes many files gives the good files their full output, lists
each bad one in one line (file, reason) and exits 1 (2 when every input failed); no hidden or partial files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2pvision.cli import main
from p2pvision.models.p2p import P2PConfig, P2PModel, save_p2p

TINY = {"num_classes": 10, "image_size": 32, "classifier": "test_resnet", "selector_backbone": "test_resnet",
        "selector_levels": (1, 2), "head_channels": 8, "max_regions": 16,
        "partition": {"name": "grid", "grid": 4}}  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_p2p(P2PModel(P2PConfig(**TINY)), tmp_path_factory.mktemp("ckpt") / "model")


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.png"
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return {"good": good, "truncated": truncated, "empty": empty, "missing": tmp_path / "missing.png"}


def no_hidden_files(folder: Path) -> bool:
    return not [path for path in folder.rglob("*") if path.name.startswith(".")]


def check_failures(err: str, bad: list[str], total: int) -> None:
    lines = [line for line in err.splitlines() if line.startswith("p2pvision")]  # not the progress bar
    assert "Traceback" not in err
    assert len(lines) == len(bad) + (1 if len(bad) < total else 0)
    for name in bad:
        assert sum(name in line and line.startswith("p2pvision: error:") for line in lines) == 1, name


def test_predict_keeps_the_good_files_and_lists_the_bad(checkpoint, files, tmp_path, capsys) -> None:
    out = tmp_path / "pred"
    names = [files["good"], files["truncated"], files["empty"], files["missing"]]
    assert main(["predict", str(checkpoint), *map(str, names), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    check_failures(err, ["truncated.png", "empty.jpg", "missing.png"], 4)
    records = json.loads((out / "predictions.json").read_text())
    assert [Path(r["file"]).name for r in records] == ["good.png"] and Path(records[0]["figure"]).is_file()
    assert no_hidden_files(out)
    assert main(["predict", str(checkpoint), str(files["empty"]), "--out", str(tmp_path / "none")]) == 2


def test_explain_keeps_the_good_files_and_lists_the_bad(files, tmp_path, capsys) -> None:
    out = tmp_path / "explain"
    names = [files["truncated"], files["good"], files["missing"]]
    options = ["--method", "grad_cam", "--model", "test_resnet", "--weights", "none", "--out", str(out)]
    assert main(["explain", *map(str, names), *options]) == 1
    check_failures(capsys.readouterr().err, ["truncated.png", "missing.png"], 3)
    written = {path.name for path in out.iterdir()}  # the good image's full output (its figure formats and files)
    assert {"good.grad_cam.json", "good.grad_cam.png"} <= written
    assert {name.split(".")[0] for name in written} == {"good"}  # nothing for the bad ones


def test_sigterm_keeps_the_finished_outputs_and_their_index(checkpoint, files, tmp_path) -> None:
    photos = []
    for number in range(96):
        path = tmp_path / f"photo{number:02d}.png"
        path.write_bytes(files["good"].read_bytes())
        photos.append(str(path))
    out = tmp_path / "pred"
    process = subprocess.Popen([sys.executable, "-m", "p2pvision.cli", "predict", str(checkpoint), *photos,
                                "--out", str(out)], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(out.glob("0000_*.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err
    records = json.loads((out / "predictions.json").read_text())
    assert 1 <= len(records) < 96 and all(Path(record["figure"]).is_file() for record in records)
    assert no_hidden_files(out)


@pytest.mark.parametrize("landed", [True, False])
def test_an_interrupt_next_to_a_figure_keeps_the_index_true_to_the_files(checkpoint, files, tmp_path, monkeypatch,
                                                                          landed) -> None:  # fmt: skip
    """The race the SIGTERM test above can hit: interrupted right after an image's figure landed, the index lists it;
    interrupted while it was being written (nothing landed), the index leaves it out."""
    import p2pvision.predict as predict
    from p2pvision.models.p2p import load_p2p

    real_figure = predict.explanation_figure
    photos = [str(files["good"])] * 3

    def interrupted_at_the_second(picture, result, index, name, figure, class_names):
        if figure.name.startswith("0001") and not landed:
            raise KeyboardInterrupt
        real_figure(picture, result, index, name, figure, class_names)
        if figure.name.startswith("0001"):
            raise KeyboardInterrupt

    monkeypatch.setattr(predict, "explanation_figure", interrupted_at_the_second)
    out = tmp_path / "pred"
    with pytest.raises(KeyboardInterrupt):
        predict.predict_files(load_p2p(checkpoint), photos, out, batch_size=3, progress=False)
    listed = [Path(record["figure"]).name for record in json.loads((out / "predictions.json").read_text())]
    assert listed == sorted(path.name for path in out.glob("*.png"))
    assert len(listed) == (2 if landed else 1)


def test_sigterm_leaves_inv_explain_with_every_finished_folder_whole(files, tmp_path) -> None:
    """Every cluster-map folder written has its clustermaps.json (what 'label serve' and 'inv global' read) and its
    files; the image in work leaves nothing; exit 143, one line."""
    from p2pvision.inv.runs import find_runs

    photos = []
    for number in range(40):
        path = tmp_path / f"photo{number:02d}.png"
        path.write_bytes(files["good"].read_bytes())
        photos.append(str(path))
    out = tmp_path / "maps"
    options = ["--model", "test_resnet", "--weights", "none", "--embedding", "pca", "--out", str(out)]
    command = [sys.executable, "-m", "p2pvision.cli", "inv", "explain", *photos, *options]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 180
    while not list(out.glob("*/clustermaps.json")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next image
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    folders = sorted(out.iterdir())
    assert 1 <= len(folders) < 40 and no_hidden_files(out)
    runs = find_runs([out])
    assert sorted(run.folder.name for run in runs) == [folder.name for folder in folders]
    for run in runs:
        assert (run.folder / "overview.png").is_file() and run.arrays() and run.image().shape[2] == 3


def bad_number_cases(checkpoint: Path, image: Path, folder: Path, a_file: Path) -> list[list[str]]:
    explain = ["explain", str(image), "--method", "grad_cam", "--model", "test_resnet", "--weights", "none"]
    return [
        ["predict", str(checkpoint), str(image), "--delta", "5"],
        ["predict", str(checkpoint), str(image), "--delta", "abc"],
        ["predict", str(checkpoint), str(image), "--tau", "-1"],
        ["predict", str(checkpoint), str(image), "--tau", "nan"],
        ["predict", str(checkpoint), str(image), "--out", str(a_file)],
        ["evaluate", str(checkpoint), "--delta", "0.9", "1.5"],
        ["evaluate", str(checkpoint), "--images", "0"],
        [*explain, "--target", "-3"],
        [*explain, "--target", "5000"],
        [*explain, "--device", "cuda:7"],
        [*explain, "--device", "toaster"],
        [*explain, "--grid", "0"],
        [*explain, "--out", str(a_file)],
        ["explain", str(image), "--method", "lime", "--param", "num_samples=-1"],  # before the model loads
        ["explain", str(image), "--method", "rise", "--param", "keep_probability=1.5"],
        ["data", "sheet", "--count", "-4", "--out", str(folder / "sheet.png")],
        ["data", "semisynthetic", "--n", "0"],
        ["data", "inspect", "imagefolder", str(folder), "--sample", "-3"],
        ["label", "serve", str(folder), "--port", "70000"],
        ["train", "--config", "demo", "--out", str(a_file)],
        ["benchmark", "--config", "cpu", "--out", str(a_file / "inside")],
    ]


def test_bad_numbers_and_output_paths_are_one_line_before_any_work(checkpoint, files, tmp_path, capsys) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("keep me")
    for argv in bad_number_cases(checkpoint, files["good"], folder, a_file):
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("p2pvision: error:"), (argv, err)
        assert "Traceback" not in err
    assert a_file.read_text() == "keep me" and not list(folder.iterdir())
    assert not (tmp_path / "results").exists()
