"""The p2pvision command: each subcommand end to end, and one-line errors with exit code 2."""

import json

import numpy as np
from PIL import Image

from p2pvision.cli import main
from p2pvision.data.folders import ImageFolderDataset

SMALL = ["--size", "32", "--n-train", "30", "--n-val", "10", "--n-test", "10", "--quiet"]


def test_info_prints_versions_and_cache(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("P2PVISION_CACHE", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "timm" in out and str(tmp_path) in out and "tf_efficientnet_lite0" in out


def test_semisynthetic_prints_timing_and_area_share(capsys, tmp_path):
    assert main(["data", "semisynthetic", *SMALL, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ready in" in out and "mean object area share" in out and "10 classes" in out


def test_export_is_readable_as_image_folder_with_masks(tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["data", "export", *SMALL, "--root", str(tmp_path / "gen"), "--out", str(out)]) == 0
    info = json.loads((out / "info.json").read_text())
    assert info["images"] == {"train": 30, "val": 10, "test": 10}
    exported = ImageFolderDataset(out / "train", masks_root=out / "masks" / "train")
    assert len(exported) == 30 and exported.has_masks
    sample = exported[0]
    share = float(sample["mask"].float().mean())
    assert 0.02 < share < 0.5
    assert not list(tmp_path.glob(".export.*")), "temporary export folder left behind"


def test_export_refuses_a_non_empty_folder_and_keeps_it(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["data", "export", *SMALL, "--root", str(tmp_path / "gen"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not empty" in err and str(out) in err and "--overwrite" in err and "\n" not in err
    assert (out / "precious.txt").read_text() == "keep me"


def test_invalid_parameter_is_one_line_error(capsys, tmp_path):
    assert main(["data", "semisynthetic", "--size", "8", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("p2pvision: error: image_size=8") and "\n" not in err


def test_sheet_writes_a_picture(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["data", "sheet", *SMALL, "--root", str(tmp_path), "--count", "6", "--out", str(sheet)]) == 0
    picture = np.asarray(Image.open(sheet))
    assert picture.shape[1] > 6 * 32 and picture.std() > 20  # not blank
    assert "contact sheet" in capsys.readouterr().out


def test_inspect_summarises_an_exported_folder(tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["data", "export", *SMALL, "--root", str(tmp_path / "gen"), "--out", str(out)]) == 0
    sheet = tmp_path / "inspect.png"
    args = [
        "data",
        "inspect",
        "imagefolder",
        str(out / "test"),
        "--masks",
        str(out / "masks" / "test"),
        "--sheet",
        str(sheet),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "10 images" in printed and "masks: yes" in printed and "mean mask area share" in printed
    assert "min [32, 32]" in printed and sheet.is_file()


def test_inspect_wrong_layout_says_what_was_expected(tmp_path, capsys):
    (tmp_path / "flat.png").write_bytes(b"")
    assert main(["data", "inspect", "imagefolder", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "expected" in err and "<class>" in err and "\n" not in err


def test_overrides_may_follow_options(tmp_path, capsys) -> None:
    """``KEY=VALUE`` after an option joins the overrides given before it (argparse alone takes them once)."""
    from p2pvision.cli import main

    code = main(["train", "--config", "demo", "train.mode=classifier", "--out", str(tmp_path / "run"),
                 "train.epochs=abc"])  # fmt: skip
    assert code == 2 and "train.epochs: got 'abc'" in capsys.readouterr().err  # the late override was read
    assert main(["train", "--config", "demo", "--out", str(tmp_path / "run"), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["explain", "a.png", "--method", "moxi", "foo=1"]) == 2  # a command without overrides refuses them
    assert "unrecognized arguments: foo=1" in capsys.readouterr().err
