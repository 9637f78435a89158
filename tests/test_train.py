"""Training end to end on tiny data: outputs, exact resume after a crash, DDP on CPU, the full-image baseline."""

import csv
import json
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
import yaml
from safetensors.torch import load_file

from p2pvision.errors import ConfigError
from p2pvision.models.p2p import load_p2p
from p2pvision.train.experiment import load_experiment
from p2pvision.train.inpainter import KIND as INPAINTER
from p2pvision.train.inpainter import config_kind, load_inpainter_experiment
from p2pvision.train.run import run_training

TINY = {
    "name": "tiny",
    "data": {"source": "semisynthetic", "image_size": 32, "n_train": 48, "n_val": 16, "n_test": 16},
    "model": {
        "classifier": "test_resnet",
        "selector_backbone": "test_resnet",
        "selector_levels": [1, 2],
        "head_channels": 8,
        "partition": {"name": "grid", "grid": 4},
        "max_regions": 16,
    },
    "train": {
        "epochs": 2, "batch_size": 16, "lr": 0.001, "val_tau_grid": [0.2, 1.0], "trainer": {"log_every_n_steps": 1}
    },
}


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_training_writes_model_logs_and_metrics(config_file, tmp_path):
    out = run_training(load_experiment(config_file), tmp_path / "run", progress=False)
    model = load_p2p(out)
    assert model.config.num_classes == 10 and model.class_names[0] == "zero"
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in logged[0] and "val/acc" in logged[0] and len(logged) > 4
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 <= metrics["validation"]["val/kept"] <= 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(ConfigError, match="already holds a run"):
        run_training(load_experiment(config_file), tmp_path / "run", progress=False)


class _Crash(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_interrupted_and_resumed_run_ends_with_the_same_weights(config_file, tmp_path):
    config = load_experiment(config_file)
    run_training(config, tmp_path / "straight", progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(config, tmp_path / "crashed", callbacks=[_Crash()], progress=False)
    assert not (tmp_path / "crashed" / "model").exists()
    run_training(config, tmp_path / "crashed", resume=True, progress=False)
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)
    assert (tmp_path / "crashed" / "logs" / "metrics.csv").is_file()  # the first part's log survives
    assert (tmp_path / "crashed" / "logs-resumed-1" / "metrics.csv").is_file()


def test_resume_refuses_other_settings_or_nothing(config_file, tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_training(load_experiment(config_file), tmp_path / "empty", resume=True, progress=False)
    run_training(load_experiment(config_file, ["train.epochs=1"]), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_training(load_experiment(config_file, ["train.lr=0.5"]), tmp_path / "run", resume=True, progress=False)


def test_full_image_baseline_trains_the_same_classifier(config_file, tmp_path):
    from p2pvision.models.backbones import load_classifier

    out = run_training(
        load_experiment(config_file, ["train.mode=classifier", "train.epochs=1"]), tmp_path / "bb", progress=False
    )
    classifier = load_classifier(out)
    assert classifier.num_classes == 10
    assert classifier(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_warmup_epochs_train_the_classifier_alone_then_p2p(config_file, tmp_path):
    """During the warm-up only the classifier learns (full images); afterwards the selector learns too."""
    from p2pvision.models.p2p import P2PConfig, P2PModel

    config = load_experiment(config_file, ["train.epochs=1", "train.warmup_epochs=1"])
    L.seed_everything(config.train.seed, verbose=False)
    initial = P2PModel(P2PConfig.from_dict(config.p2p_config(10, [str(i) for i in range(10)]).to_dict()))
    warmed = load_p2p(run_training(config, tmp_path / "warm", progress=False))
    assert all(torch.equal(a, b) for a, b in zip(initial.selector.parameters(), warmed.selector.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(initial.classifier.parameters(), warmed.classifier.parameters()))
    logged = (tmp_path / "warm" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/warmup_ce" in logged and "train/ce" not in logged

    config = load_experiment(config_file, ["train.warmup_epochs=1", "train.warmup_lr=0.01"])
    both = load_p2p(run_training(config, tmp_path / "p2p", progress=False))
    assert not all(torch.equal(a, b) for a, b in zip(initial.selector.parameters(), both.selector.parameters()))
    rows = list(csv.DictReader((tmp_path / "p2p" / "logs" / "metrics.csv").open()))
    rates = {(row["epoch"], round(float(row["train/lr"]), 6)) for row in rows if row.get("train/lr")}
    assert rates == {("0", 0.01), ("1", 0.001)}  # warm-up lr, then the P2P lr


def test_two_process_ddp_on_cpu(config_file, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "p2pvision.cli", "train", "--config", str(config_file), "--out", str(tmp_path / "ddp"),
        "train.trainer.accelerator=cpu", "train.trainer.devices=2", "train.trainer.strategy=ddp", "train.epochs=1",
        "train.trainer.limit_train_batches=2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained p2p 'tiny'" in done.stdout
    assert load_p2p(tmp_path / "ddp" / "model").config.num_classes == 10


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["train.epochz=3"], "unknown key train.epochz; known keys of train: mode, epochs"),
        (["model.tau_mode=x"], "model.tau_mode: got 'x'; allowed: dynamic, fixed"),
        (["epochs=3"], "unknown key epochs; known keys: name, data, model, train"),
        (["train.warmup_epochs=3"], r"train.warmup_epochs: got 3; must be <= epochs \(2\)"),
        (["train.trainer.max_epochs=3"], "train.trainer.max_epochs: got 3; set by p2pvision: use train.epochs"),
    ],
)
def test_bad_settings_are_named(config_file, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_experiment(config_file, overrides)


def test_trainer_arguments_of_the_old_layout_are_moved_with_a_warning(config_file):
    with pytest.warns(FutureWarning, match=r"train\.(accelerator|precision) is now train\.trainer\.") as caught:
        config = load_experiment(config_file, ["train.accelerator=cpu", "train.precision=16"])
    assert "train.accelerator is now train.trainer.accelerator" in str(caught[0].message) and len(caught) == 2
    assert (config.train.trainer.accelerator, config.train.trainer.precision) == ("cpu", "16")
    with pytest.raises(ConfigError, match="train.devices and train.trainer.devices are both given"):
        load_experiment(config_file, ["train.devices=2", "train.trainer.devices=1"])


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    assert {c.stem for c in configs} >= {
        "semisynthetic_object",
        "semisynthetic_scene",
        "cifar10",
        "imagenet",
        "imagenet9",
        "coco10",
        "bam",
    }
    for path in configs:
        if config_kind(path) == INPAINTER:  # the learned inpainter's own kind (tests/test_inpainter.py)
            assert load_inpainter_experiment(path).kind == INPAINTER
            continue
        config = load_experiment(path)
        assert config.p2p_config(10, [str(i) for i in range(10)]).num_classes == 10


class _Batches(L.Callback):
    """Keeps every training batch (as the training step gets it) and every validation batch."""

    def __init__(self) -> None:
        self.train: list[tuple[int, int, dict]] = []
        self.val: list[dict] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.train.append((trainer.current_epoch, batch_idx, dict(batch)))

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0):
        self.val.append(dict(batch))


def test_training_batches_are_augmented_whole_with_one_generator_per_batch(config_file, tmp_path):
    """The loader gives un-augmented samples; each training batch is augmented after the transfer with the generator
    of (seed, epoch, rank, batch index); validation batches are left as they are."""
    from torch.utils.data import default_collate

    from p2pvision.train.data import P2PDataModule, augmentation_generator

    config = load_experiment(config_file)
    seen = _Batches()
    run_training(config, tmp_path / "run", callbacks=[seen], progress=False)
    data = P2PDataModule(config.data, config.partition, config.train.batch_size, config.train.seed, progress=False)
    data.setup()
    assert [(epoch, index) for epoch, index, _ in seen.train] == [(e, i) for e in range(2) for i in range(3)]
    for epoch, index, batch in seen.train:
        plain = default_collate([data.datasets["train"][int(i)] for i in batch["index"]])
        expected = data.augment(plain, augmentation_generator(config.train.seed, epoch, 0, index))
        assert not torch.equal(batch["image"], plain["image"])
        for key in ("image", "mask", "object_mask", "regions"):
            assert torch.equal(batch[key], expected[key]), key
    for batch in seen.val:
        plain = default_collate([data.datasets["val"][int(i)] for i in batch["index"]])
        assert all(torch.equal(batch[key], plain[key]) for key in ("image", "mask", "regions"))


def test_without_a_region_cache_each_augmented_view_is_segmented_in_the_loader(config_file):
    """data.region_cache false: the loader augments each sample and computes the regions of the augmented view (the
    reference code's way); batches are then not augmented again."""
    from p2pvision.regions.partition import make_partitioner
    from p2pvision.train.data import P2PDataModule, build_stage

    config = load_experiment(config_file, ["data.region_cache=false"])
    train = build_stage(config.data, "train", make_partitioner(**config.partition), progress=False)
    plain = build_stage(config.data, "val", make_partitioner(**config.partition), progress=False)
    torch.manual_seed(0)
    first = train[0]
    torch.manual_seed(1)
    second = train[0]
    assert first["image"].shape == (3, 32, 32) and not torch.equal(first["image"], second["image"])
    assert first["regions"].dtype == torch.int64 and int(first["regions"].max()) < 16
    torch.manual_seed(0)
    plain_first = plain[0]["image"]
    torch.manual_seed(1)
    assert torch.equal(plain[0]["image"], plain_first)  # validation samples are not augmented
    assert P2PDataModule(config.data, config.partition, 16, 0, progress=False).augment is None


def test_loader_workers_change_nothing(config_file, tmp_path):
    """Loader workers only index and collate (no random draws): the same weights with 0 and 2 workers."""
    config = load_experiment(config_file, ["train.epochs=1"])
    run_training(config, tmp_path / "main", progress=False)
    run_training(load_experiment(config_file, ["train.epochs=1", "data.num_workers=2"]), tmp_path / "w", progress=False)
    plain = load_file(tmp_path / "main" / "model" / "model.safetensors")
    workers = load_file(tmp_path / "w" / "model" / "model.safetensors")
    assert all(torch.equal(plain[key], workers[key]) for key in plain)
