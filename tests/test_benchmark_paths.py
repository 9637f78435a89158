"""Benchmark configs: relative paths written in a YAML file are read from the file's folder (whatever the working
directory), paths in key=value overrides from the working directory; using a swept method by its family name says
what to write instead."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from p2pvision.benchmark.config import benchmark_from_dict, load_benchmark
from p2pvision.errors import ConfigError

DATA = {"source": "semisynthetic", "task": "object", "image_size": 32, "n_train": 32, "n_val": 8, "n_test": 12}


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A benchmark file in configs/ that names a checkpoint, a weights file, a training config, a data config and
    a data root by relative paths; the working directory is another folder."""
    (tmp_path / "configs" / "training").mkdir(parents=True)
    (tmp_path / "models" / "p2p").mkdir(parents=True)
    (tmp_path / "configs" / "training" / "short.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    (tmp_path / "configs" / "data.yaml").write_text(yaml.safe_dump({"data": DATA}))
    config = {
        "datasets": {
            "object": {"data": "data.yaml"},
            "folder": {"data": {"source": "imagefolder", "root": "images", "image_size": 32}},
        },
        "methods": {
            "p2p": {"kind": "p2p", "checkpoint": "../models/p2p", "datasets": ["object"]},
            "file": {"kind": "blackbox", "classifier": "test_resnet", "weights": "../models/weights.safetensors"},
            "offline": {"kind": "blackbox", "classifier": "tf_efficientnet_lite0", "weights": "package"},
            "trained": {"kind": "blackbox", "config": "training/short.yaml", "datasets": ["object"]},
            "shipped": {"kind": "blackbox", "config": "semisynthetic_{dataset}", "datasets": ["object"]},
            "swept": {"kind": "p2p", "sweep": {"checkpoint": ["../models/p2p", "/elsewhere/p2p"]},
                      "datasets": ["object"]},
        },
    }  # fmt: skip
    (tmp_path / "configs" / "bench.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def test_relative_paths_in_the_file_are_read_from_its_folder(project: Path) -> None:
    config = load_benchmark(project / "configs" / "bench.yaml")
    spec = {name: method.spec for name, method in config.methods.items()}
    assert Path(spec["p2p"]["checkpoint"]).resolve() == project / "models" / "p2p"
    assert Path(spec["file"]["weights"]).resolve() == project / "models" / "weights.safetensors"
    assert spec["offline"]["weights"] == "package"  # names stay names
    assert Path(spec["trained"]["config"]) == project / "configs" / "training" / "short.yaml"  # it was loaded
    assert spec["shipped"]["config"] == "semisynthetic_{dataset}"
    assert Path(spec["swept@checkpoint=../models/p2p"]["checkpoint"]).resolve() == project / "models" / "p2p"
    assert spec["swept@checkpoint=/elsewhere/p2p"]["checkpoint"] == "/elsewhere/p2p"
    assert config.datasets["object"].data["n_test"] == 12  # read from configs/data.yaml
    assert Path(config.datasets["folder"].data["root"]) == project / "configs" / "images"


def test_the_same_file_from_another_working_directory_gives_the_same_paths(project: Path, monkeypatch) -> None:
    first = load_benchmark(project / "configs" / "bench.yaml")
    monkeypatch.chdir(project / "configs")
    second = load_benchmark("bench.yaml")  # a relative path to the file itself
    assert {n: m.spec for n, m in first.methods.items()} == {n: m.spec for n, m in second.methods.items()}


def test_paths_in_overrides_are_read_from_the_working_directory(project: Path) -> None:
    config = load_benchmark(project / "configs" / "bench.yaml", [
        "methods.p2p.checkpoint=runs/p2p", "methods.file.weights=/abs/w.safetensors",
        "datasets.folder.data.root=photos",
    ])  # fmt: skip
    assert config.methods["p2p"].spec["checkpoint"] == "runs/p2p"  # used as given: from the working directory
    assert config.methods["file"].spec["weights"] == "/abs/w.safetensors"
    assert config.datasets["folder"].data["root"] == "photos"


def test_shipped_configs_keep_their_names() -> None:
    cpu = load_benchmark("cpu")
    assert cpu.methods["blackbox"].spec["config"] == "semisynthetic_{dataset}"
    assert cpu.methods["lite0"].spec["weights"] == "package"


def test_using_a_swept_method_by_its_name_says_what_to_write() -> None:
    methods = {
        "p2p": {"kind": "p2p", "checkpoint": "x", "sweep": {"delta": [0.5, 0.9]}},
        "grad_cam": {"kind": "explainer", "explainer": "grad_cam", "explains": "p2p"},
    }
    expected = (
        "methods.grad_cam.explains: 'p2p' is swept, so there is no method 'p2p' but 2 (p2p@delta=0.5, "
        "p2p@delta=0.9): name one of them (explains: p2p@delta=0.9), or sweep methods.grad_cam over them "
        "(sweep: {explains: [p2p@delta=0.5, p2p@delta=0.9]}) to run it with each"
    )
    with pytest.raises(ConfigError) as error:
        benchmark_from_dict({"datasets": {"d": {"data": DATA}}, "methods": methods})
    assert str(error.value) == expected
    # both suggestions load as written (from YAML, as a user would write them)
    one = yaml.safe_load("{kind: explainer, explainer: grad_cam, explains: p2p@delta=0.9}")
    each = yaml.safe_load("{kind: explainer, explainer: grad_cam, sweep: {explains: [p2p@delta=0.5, p2p@delta=0.9]}}")
    for entry, names in ((one, ["grad_cam"]), (each, ["grad_cam@explains=p2p@delta=0.5",
                                                       "grad_cam@explains=p2p@delta=0.9"])):  # fmt: skip
        config = benchmark_from_dict({"datasets": {"d": {"data": DATA}}, "methods": {**methods, "grad_cam": entry}})
        assert [name for name in config.methods if name.startswith("grad_cam")] == names
    selection = {"kind": "posthoc_selection", "explainer": "grad_cam", "explains": "blackbox", "match": "p2p"}
    blackbox = {"kind": "blackbox", "classifier": "test_resnet"}
    with pytest.raises(ConfigError, match=r"methods.top.match: 'p2p' is swept.*\(match: p2p@delta=0.9\)"):
        benchmark_from_dict({"datasets": {"d": {"data": DATA}},
                             "methods": {"p2p": methods["p2p"], "blackbox": blackbox, "top": selection}})  # fmt: skip
