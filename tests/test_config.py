"""The configuration layer: every shipped config loads, and a wrong value anywhere in it (a wrong type, or a number
out of range) stops the real CLI with exit code 2 and one line that names the key, before any data or training."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest
import yaml

from p2pvision.cli import main
from p2pvision.config import SHIPPED, apply_overrides, merge, parse_assignment, read_config, shipped_names, validate
from p2pvision.errors import ConfigError
from p2pvision.models.p2p import P2PConfig
from p2pvision.train.experiment import ExperimentConfig, TrainConfig, load_experiment
from p2pvision.train.inpainter import KIND as INPAINTER
from p2pvision.train.inpainter import config_kind, load_inpainter_experiment

TRAIN_CONFIGS = shipped_names(SHIPPED)
BENCHMARK_CONFIGS = shipped_names(SHIPPED / "benchmark")


def _leaves(data: typing.Any, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """``(dotted key, value)`` of every value that is not a mapping (lists are values: overrides have no index)."""
    if isinstance(data, dict):
        return [leaf for key, value in data.items() for leaf in _leaves(value, f"{prefix}.{key}" if prefix else key)]
    return [(prefix, data)]


def _bad_values(value: typing.Any) -> list[str]:
    """Wrong values for a key that holds ``value``: a mapping (a wrong type for every leaf), text for numbers,
    switches and lists, and -1 (or a list holding -1) where the value is a number (out of range for every numeric
    key of the shipped configs)."""
    bad = ["{wrong: 1}"]
    if isinstance(value, (bool, int, float, list)):
        bad.append("abc")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        bad.append("-1")
    if isinstance(value, list) and value and all(type(v) in (int, float) for v in value):
        bad.append("[-1]")
    return bad


# Explainer parameters (methods.*.params.*) are checked against the explainer's signature when the config loads:
# names, types and the ranges its annotations declare.
def _cases(names: list[str], folder) -> list[tuple[str, str, str]]:
    return [(name, key, bad) for name in names for key, value in _leaves(read_config(name, folder)[1])
            for bad in _bad_values(value)]  # fmt: skip


@pytest.fixture()
def no_work(monkeypatch):
    """Training and benchmarking fail the test at once: a wrong value must be refused before them."""

    def refuse(*args, **kwargs):
        raise AssertionError("the config was accepted and work started")

    monkeypatch.setattr("p2pvision.train.run.run_training", refuse)
    monkeypatch.setattr("p2pvision.benchmark.engine.run_benchmark", refuse)


def _assert_one_line(capsys, code: int, key: str, out) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("p2pvision: error: "), err
    assert "Traceback" not in err
    assert key in lines[0] or key.rsplit(".", 1)[0] in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())
    return lines[0]


def test_every_shipped_config_loads():
    assert {"demo", "semisynthetic_object", "semisynthetic_scene", "cifar10", "imagenet", "bam"} <= set(TRAIN_CONFIGS)
    assert {"cpu", "cifar10", "imagenet9", "coco10"} <= set(BENCHMARK_CONFIGS)
    from p2pvision.benchmark.config import load_benchmark

    for name in TRAIN_CONFIGS:
        if config_kind(name) == INPAINTER:
            assert load_inpainter_experiment(name).data.image_size > 0
            continue
        config = load_experiment(name)
        assert config.p2p_config(10).image_size == config.data.image_size
    for name in BENCHMARK_CONFIGS:
        assert load_benchmark(name).cell_count() > 0


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_a_wrong_value_anywhere_in_a_training_config_is_one_line(name, tmp_path, capsys, no_work):
    out = tmp_path / "out"
    for _, key, bad in _cases([name], SHIPPED):
        code = main(["train", "--config", name, f"{key}={bad}", "--out", str(out)])
        _assert_one_line(capsys, code, key, out)


@pytest.mark.parametrize("name", BENCHMARK_CONFIGS)
def test_a_wrong_value_anywhere_in_a_benchmark_config_is_one_line(name, tmp_path, capsys, no_work):
    out = tmp_path / "out"
    for _, key, bad in _cases([name], SHIPPED / "benchmark"):
        code = main(["benchmark", "--config", name, f"{key}={bad}", "--out", str(out), "--quiet"])
        _assert_one_line(capsys, code, key, out)


@pytest.mark.parametrize(
    "override, line",
    [
        ("train.epochs=-1", "train.epochs: got -1; must be an integer >= 1"),
        ("train.epochs=abc", "train.epochs: got 'abc'; must be an integer >= 1"),
        ("train.epochs=true", "train.epochs: got true; must be an integer >= 1"),
        ("train.batch_size=0", "train.batch_size: got 0; must be an integer >= 1"),
        ("train.lr=-1", "train.lr: got -1; must be a number > 0"),
        ("train.warmup_epochs=10", "train.warmup_epochs: got 10; must be <= epochs (9)"),
        ("train.trainer.precision=bogus", "train.trainer.precision: got 'bogus'; allowed: 32-true, 16-mixed,"),
        ("train.epoch=3", "unknown key train.epoch; known keys of train: mode, epochs,"),
        ("train.epoch=3", "(did you mean 'epochs'?)"),
        ("train=abc", "train: got 'abc'; must be a section (keys: mode, epochs,"),
        ("model.fixed_tau=2", "model.fixed_tau: got 2; must be a number in (0, 1]"),
        ("model.delta=1", "model.delta: got 1; must be a number in (0, 1)"),
        ("model.partition.n_segments=abc", "model.partition.n_segments: got 'abc'; must be an integer"),
        ("model.partition.n_segments=0", "model.partition.n_segments: must be a positive integer, got 0"),
        ("model.partition.name=hexagons", "model.partition.name: got 'hexagons'; allowed: felzenszwalb, grid"),
        ("model.tau_grid=[0.5,2]", "model.tau_grid[1]: got 2; must be a number in (0, 1]"),
        ("model.fill=purple", "model.fill: got 'purple'; allowed: "),
        ("model.num_classes=3", "model.num_classes comes from the data set"),
        ("data.crop_scale=[0.9,0.5]", "data.crop_scale: got [0.9, 0.5]; the low end must be <= the high end"),
        ("data.task=obj", "data.task: got 'obj'; allowed for source semisynthetic: object, scene"),
        ("data.val_fraction=1", "data.val_fraction: got 1; must be a number in (0, 1)"),
        ("train.trainer.max_epochs=3", "train.trainer.max_epochs: got 3; set by p2pvision: use train.epochs"),
        ("train.trainer.acumulate_grad_batches=2", "(did you mean 'accumulate_grad_batches'?)"),
        (
            "train.trainer.accumulate_grad_batches=abc",
            "train.trainer.accumulate_grad_batches: got 'abc'; must be an integer",
        ),  # fmt: skip
        ("train.trainer.strategy=dpp", "train.trainer.strategy: got 'dpp'; allowed: auto, ddp,"),
        ("epochs=3", "unknown key epochs; known keys: name, data, model, train"),
        ("train.epochs", "'train.epochs' is not of the form key=value"),
        ("train.epochs=[1", "train.epochs: cannot parse '[1' as a YAML value"),
        ("data.flip.x=1", "data.flip: got false, a value, not a section; cannot set data.flip.x"),
    ],
)
def test_error_lines(override, line, tmp_path, capsys, no_work):
    code = main(["train", "--config", "semisynthetic_object", override, "--out", str(tmp_path / "out")])
    assert line in _assert_one_line(capsys, code, override.partition("=")[0].partition("[")[0], tmp_path / "out")


def test_trainer_arguments_pass_through_to_lightning():
    overrides = ["train.trainer.accumulate_grad_batches=4", "train.trainer.gradient_clip_val=1"]
    config = load_experiment("cifar10", overrides)
    trainer = config.train.trainer.model_dump()
    assert trainer["accelerator"] == "gpu" and trainer["devices"] == "auto" and trainer["precision"] == "16-mixed"
    assert trainer["accumulate_grad_batches"] == 4 and trainer["gradient_clip_val"] == 1
    assert config.to_dict()["train"]["trainer"] == trainer
    assert load_experiment("demo", ["train.trainer.precision=16"]).train.trainer.precision == "16"


def test_lightning_refusing_the_trainer_is_one_line_before_any_data(tmp_path):
    import torch

    from p2pvision.train.run import run_training

    more_than_here = torch.cuda.device_count() + 1  # refused on any machine: no GPU, or too few
    overrides = ["train.trainer.accelerator=gpu", f"train.trainer.devices={more_than_here}"]
    with pytest.raises(ConfigError, match="^train.trainer: "):
        run_training(load_experiment("demo", overrides), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_lists_of_choices_match_the_libraries():
    from typing import get_args

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT
    from lightning.pytorch.accelerators import AcceleratorRegistry

    from p2pvision.benchmark.data import PHOTOS
    from p2pvision.data.local import FORMATS
    from p2pvision.data.sources import OBJECT_SOURCES
    from p2pvision.train.baselines import BASELINE_MODES
    from p2pvision.train.experiment import ACCELERATORS, DATA_SOURCES, PRECISIONS, TRAIN_MODES, DataConfig

    assert set(PRECISIONS) == {str(value) for part in get_args(_PRECISION_INPUT) for value in get_args(part)}
    assert set(AcceleratorRegistry.available_accelerators()) | {"auto", "gpu"} == set(ACCELERATORS)
    assert set(TRAIN_MODES) == {"p2p", "classifier", *BASELINE_MODES}
    assert set(DATA_SOURCES) == {"semisynthetic", *FORMATS}
    assert set(get_args(DataConfig.model_fields["objects"].annotation)) == set(OBJECT_SOURCES)
    assert PHOTOS


def test_p2p_config_checks_every_field_and_stays_a_dataclass():
    config = P2PConfig(num_classes=3, partition={"name": "grid", "grid": 4}, tau_grid=[0.5, 0.1])
    assert config.tau_grid == (0.1, 0.5) and config.selector_levels == (1, 2, 3)
    assert P2PConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for changes, line in [
        ({"num_classes": 1}, "model.num_classes: got 1; must be an integer >= 2"),
        ({"fixed_tau": 0}, "model.fixed_tau: got 0; must be a number in (0, 1]"),
        ({"hard_mask_prob": 0.6, "test_mask_prob": 0.6}, "hard_mask_prob + test_mask_prob must be <= 1"),
        ({"class_names": ["a", "b"]}, 'model.class_names: got ["a", "b"]; must name num_classes (3) classes'),
        ({"tau_range": [0.5, 0.1]}, "model.tau_range: got [0.5, 0.1]; the low end must be <= the high end"),
    ]:
        with pytest.raises(ConfigError) as error:
            P2PConfig(**{"num_classes": 3, **changes})
        assert line in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="model.mc_samples: got 0"):
        dataclasses.replace(config, mc_samples=0)  # replace() checks too
    with pytest.raises(ConfigError, match="unknown key model.lamda; known keys of model: "):
        P2PConfig.from_dict({"num_classes": 3, "lamda": 1})


def test_the_experiment_dict_is_deterministic_and_complete():
    first, second = load_experiment("semisynthetic_scene").to_dict(), load_experiment("semisynthetic_scene").to_dict()
    assert json.dumps(first) == json.dumps(second)
    assert list(first) == ["name", "data", "model", "train"] and "trainer" in first["train"]
    assert first["model"]["test_mask_prob"] == 0.5 and "fixed_tau" not in first["model"]  # the keys given
    again = load_experiment(None, []).to_dict()
    assert again["train"] == TrainConfig().model_dump(mode="json") and again["model"] == {}
    assert yaml.safe_load(yaml.safe_dump(first)) == first
    assert ExperimentConfig.model_validate(first).to_dict() == first


def test_overrides_and_merging():
    data = {"train": {"epochs": 3, "trainer": {"devices": 2}}}
    changed = apply_overrides(data, ["train.trainer.precision=16-mixed", "model.partition.name=grid", "name=x"])
    assert changed == {"train": {"epochs": 3, "trainer": {"devices": 2, "precision": "16-mixed"}},
                       "model": {"partition": {"name": "grid"}}, "name": "x"}  # fmt: skip
    assert data == {"train": {"epochs": 3, "trainer": {"devices": 2}}}  # a copy
    assert parse_assignment("a.b=[1, 2]") == ("a.b", [1, 2])
    assert merge({"trainer": {"devices": 2, "precision": "32"}, "lr": 1}, {"trainer": {"precision": "16"}}) == {
        "trainer": {"devices": 2, "precision": "16"}, "lr": 1}  # fmt: skip
    with pytest.raises(ConfigError, match="does not exist: give a YAML file or a shipped name"):
        read_config("no-such-config")
    with pytest.raises(ConfigError, match="^unknown key x; known keys: mode, epochs"):
        validate(TrainConfig, {"x": 1})


def test_benchmark_errors_name_the_key(capsys, tmp_path, no_work):
    from p2pvision.benchmark.config import load_benchmark

    cases = [
        ("methods.p2p.sweep.delta=[0.9,2]", "methods.p2p.sweep.delta: got 2; must be a number in (0, 1)"),
        (
            "methods.p2p.train.epochs=3",
            "methods.p2p on data set 'object' (with config semisynthetic_object): "
            "train.warmup_epochs: got 6; must be <= epochs (3)",
        ),  # fmt: skip
        ("methods.p2p.train.epochs=6", "train.warmup_epochs: got 6; must be < epochs (6) in a benchmark"),
        ("methods.p2p.datasets=[object,photos]", "methods.p2p on data set 'photos': the photos have no training split"),
        (
            "methods.lime.params.num_samplez=3",
            "unknown key methods.lime.params.num_samplez; known keys of methods.lime.params: removal, num_samples",
        ),  # fmt: skip
        ("methods.lime.params.partition.grid=3", "unknown key methods.lime.params.partition.grid"),
        ("hardware.logger=true", "hardware.logger: got true; set by p2pvision: the evaluation loop sets it"),
        ("datasets.scene.data=semisynthetic_scen", "datasets.scene.data: config file 'semisynthetic_scen' does not"),
        ("metrics=[{name: rise, mode: up}]", "metrics[0]: "),
        ("methods.grad_cam.kind=grad", "methods.grad_cam.kind: got 'grad'; allowed: p2p, blackbox, explainer"),
        (
            "methods.grad_cam.explainz=lime",
            "unknown key methods.grad_cam.explainz; known keys of methods.grad_cam (kind "
            "explainer): kind, datasets, sweep, seeds, explainer, explains, params "
            "(did you mean 'explains'?)",
        ),  # fmt: skip
    ]
    for override, line in cases:
        code = main(["benchmark", "--config", "cpu", override, "--out", str(tmp_path / "out")])
        where = ".".join(override.partition("=")[0].split(".")[:2])  # the method, data set... at least
        assert line in _assert_one_line(capsys, code, where, tmp_path / "out")
    cpu = load_benchmark("cpu", ["methods.p2p.train.trainer.precision=bf16-mixed"])
    assert cpu.methods["p2p@delta=0.9"].spec["train"] == {"trainer": {"precision": "bf16-mixed"}}
    assert cpu.hardware["accelerator"] == "cpu" and cpu.datasets["photos"].data["names"]


def test_explain_params_use_the_same_parser_and_checks(capsys, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the parameters are refused first
    code = main(["explain", str(image), "--method", "shapley", "--param", "num_permutations=abc"])
    line = _assert_one_line(capsys, code, "num_permutations", tmp_path / "out")
    assert "--param num_permutations: got 'abc'; must be an integer" in line
    assert main(["explain", str(image), "--method", "shapley", "--param", "num_permutations"]) == 2
    err = capsys.readouterr().err
    assert "'num_permutations' is not of the form key=value" in err and len(err.strip().splitlines()) == 1
