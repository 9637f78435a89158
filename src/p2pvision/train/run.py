"""Run a training experiment with Lightning: CPU, GPU, several GPUs (DDP) or nodes, resumable."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import ConfigError
from p2pvision.train.baselines import BASELINE_MODES, BaselineLightning
from p2pvision.train.data import P2PDataModule
from p2pvision.train.experiment import ExperimentConfig, experiment_from_dict
from p2pvision.train.module import ClassifierLightning, P2PLightning

EXPERIMENT_FILE = "experiment.yaml"


def _loggers(config: ExperimentConfig, out: Path, resume: bool) -> list:
    """Loggers by name; a resumed run logs to a new folder (logs-resumed-N) so earlier logs are kept."""
    version = "logs"
    if resume:
        version = f"logs-resumed-{len(list(out.glob('logs-resumed-*'))) + 1}"
    loggers: list = []
    for name in config.train.loggers:
        if name == "csv":
            loggers.append(CSVLogger(out, name="", version=version))
        elif name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(out, name="", version=f"tensorboard-{version}"))
        elif name == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(name=config.name, save_dir=str(out)))
        else:
            raise ConfigError(f"train.loggers entry '{name}' is unknown: use csv, tensorboard or wandb")
    return loggers


def _check_resume(out: Path, config: ExperimentConfig) -> Path | None:
    """The last epoch checkpoint to resume from, after checking the folder holds the same experiment."""
    saved = out / EXPERIMENT_FILE
    last = out / "checkpoints" / "last.ckpt"
    if not saved.is_file() or not last.is_file():
        raise ConfigError(f"nothing to resume in '{out}': expected {saved} and {last} from an earlier run")
    with warnings.catch_warnings():  # a run saved in the old layout is read in the new one
        warnings.simplefilter("ignore", FutureWarning)
        previous = experiment_from_dict(yaml.safe_load(saved.read_text()), str(saved)).to_dict()
    current = config.to_dict()

    def strip(experiment: dict) -> dict:  # what may differ between the parts of one run: budget and hardware
        train = {k: v for k, v in experiment["train"].items() if k not in ("epochs", "loggers")}
        hardware = ("accelerator", "devices", "num_nodes", "strategy")
        train["trainer"] = {k: v for k, v in train["trainer"].items() if k not in hardware}
        return {**experiment, "train": train}

    if strip(previous) != strip(current):
        raise ConfigError(f"'{out}' holds a run with other settings: resume with the same config or use a new --out")
    return last


def _set_threads(train) -> None:
    """CPU threads per process: as configured, else the cores shared among CPU DDP processes.

    Several torch processes that each use every core oversubscribe the CPU, and OpenMP's spinning threads
    then slow everything down by an order of magnitude.
    """
    devices = train.trainer.devices
    if train.threads:
        torch.set_num_threads(train.threads)
    elif train.trainer.accelerator == "cpu" and isinstance(devices, int) and devices > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // devices))


def _trainer(config: ExperimentConfig, out: Path, resume: bool, callbacks: list, progress: bool) -> L.Trainer:
    """Lightning's Trainer with the arguments of ``train.trainer`` and those p2pvision sets itself; what Lightning
    refuses (e.g. more GPUs than there are) is a one-line ConfigError, before any data work."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(
            **config.train.trainer.model_dump(),
            max_epochs=config.train.epochs,
            logger=_loggers(config, out, resume),
            callbacks=callbacks,
            enable_progress_bar=progress,
            default_root_dir=out,
            use_distributed_sampler=False,
            enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError) as exc:
        raise ConfigError(f"train.trainer: {' '.join(str(exc).split())}") from exc


def run_training(
    config: ExperimentConfig,
    out: str | os.PathLike[str],
    resume: bool = False,
    callbacks: list[L.Callback] | None = None,
    progress: bool = True,
    continue_from: str | os.PathLike[str] | None = None,
) -> Path:
    """Train as configured; write logs, epoch checkpoints and the final model under ``out``.

    The final model goes to ``out/model`` (``save_pretrained``: safetensors, config.json and a model card with the
    experiment and the validation metrics) and the validation metrics to ``out/metrics.json``. ``resume``
    continues from ``out/checkpoints/last.ckpt``; ``continue_from`` instead continues another finished run of the
    same experiment (a folder; it may have fewer epochs) into ``out``; ``callbacks`` are extra Lightning callbacks.
    """
    out = Path(out)
    train = config.train
    _set_threads(train)
    checkpoint = _check_resume(out, config) if resume else None
    if continue_from is not None and checkpoint is None:
        checkpoint = _check_resume(Path(continue_from), config)
    if not resume and (out / "checkpoints").exists():
        raise ConfigError(f"'{out}' already holds a run: pass --resume to continue it, or choose another --out")
    monitor = "val/acc"
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=monitor, mode="max", save_last=True, every_n_epochs=1
    )
    trainer = _trainer(config, out, resume, [checkpoints, *(callbacks or [])], progress)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(train.seed, workers=True, verbose=False)
    data = P2PDataModule(config.data, config.partition, train.batch_size, train.seed, progress)
    data.prepare_data()
    classes = data.classes
    model_config = config.p2p_config(len(classes), classes)  # built once for the run
    if train.mode == "p2p":
        module: L.LightningModule = P2PLightning(
            model_config.to_dict(), train.lr, train.weight_decay, train.seed, train.val_tau_grid,
            train.warmup_epochs, train.warmup_lr,
        )  # fmt: skip
    elif train.mode in BASELINE_MODES:  # trained baselines (p2pvision.baselines) take P2P's settings
        module = BASELINE_MODES[train.mode](
            model_config.to_dict(), train.lr, train.weight_decay, train.seed, train.warmup_epochs, train.warmup_lr
        )
    else:
        module = ClassifierLightning(
            model_config.classifier, len(classes), classes, model_config.classifier_weights, train.lr,
            train.weight_decay, train.seed,
        )  # fmt: skip
    if not resume:
        with atomic_path(out / EXPERIMENT_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer.fit(module, datamodule=data, ckpt_path=str(checkpoint) if checkpoint else None, weights_only=True)
    if trainer.global_rank == 0:
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
        write_json(out / "metrics.json", {"epochs": trainer.current_epoch, "validation": metrics})
        if isinstance(module, (P2PLightning, BaselineLightning, ClassifierLightning)):  # every train.mode
            validation = {key.removeprefix("val/"): value for key, value in metrics.items() if key.startswith("val/")}
            module.model.save_pretrained(out / "model", experiment=config.to_dict(), metrics={"validation": validation})
    return out / "model"
