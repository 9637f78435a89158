"""Training runs shared between benchmark methods: hash-named run folders (reused, resumed), one shared warm-up
per data set, seed and classifier, and waiting for another process's run in distributed evaluation."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from p2pvision.cache import params_key
from p2pvision.config import merge
from p2pvision.errors import ConfigError

# Training modes whose first epochs are the classifier alone on full images: they share one warm-up run.
SHARED_WARMUP_MODES = ("p2p", "blackbox_pixel", "soft_mask")
LOG = logging.getLogger(__name__)  # progress lines; the CLI prints them


@dataclass
class TrainingRuns:
    """The training runs on one data set (its name and ``data`` section) with one seed, in ``models_dir``."""

    dataset: str
    data: dict[str, Any]
    seed: int
    models_dir: Path
    progress: bool = True

    def train(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> Path:
        """Train (or reuse, or resume) a model on this data set with this seed; returns its model folder.

        ``mode`` is a ``train.mode`` ("p2p", "classifier", a baseline's); ``model`` and ``train`` are the sections
        of a training config. Runs with equal settings share one folder, named by a hash of the whole experiment.

        With ``train.warmup_epochs`` > 0, the warm-up (the classifier alone on full images at ``warmup_lr``) is
        trained once per data set, seed and classifier and shared: the modes in :data:`SHARED_WARMUP_MODES` start
        from its weights for the remaining epochs, and a classifier run continues it (at ``warmup_lr``). So the
        Blackbox, P2P and the baselines get the same classifier and the same epochs without repeating the
        warm-up. REAL-X warms up its evaluator on random masks instead, in its own run.
        """
        warmup = int(train.get("warmup_epochs") or 0)
        if not warmup or (mode != "classifier" and mode not in SHARED_WARMUP_MODES):
            return self.train_once(mode, model, train)
        lr = train.get("warmup_lr") or train["lr"]
        classifier = {key: model[key] for key in ("classifier", "classifier_weights") if model.get(key)}
        warm_train = {**train, "lr": lr, "warmup_epochs": 0, "warmup_lr": None}
        warm = self.train_once("classifier", classifier, {**warm_train, "epochs": warmup})
        if mode == "classifier":
            return self.train_once(mode, classifier, warm_train, continues=warm.parent)
        rest = {**train, "epochs": int(train["epochs"]) - warmup, "warmup_epochs": 0, "warmup_lr": None}
        return self.train_once(mode, {**model, "classifier_weights": str(warm / "model.safetensors")}, rest)

    def train_once(
        self, mode: str, model: dict[str, Any], train: dict[str, Any], continues: Path | None = None
    ) -> Path:
        """One training run in its hash-named folder; ``continues``: a finished shorter run of the same
        experiment whose last checkpoint this one resumes (for more epochs)."""
        from p2pvision.train.experiment import experiment_from_dict
        from p2pvision.train.run import run_training

        if self.data.get("source") == "photos":
            raise ConfigError(f"data set '{self.dataset}' (photos) has no training split: give a checkpoint")
        experiment = self.experiment(mode, model, train)
        folder = self.run_folder(mode, model, train)
        # other processes of a distributed evaluation wait for the first to train
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]  # lightning sets rank on the function at import
            return wait_for(folder / "model" / "config.json").parent
        if not (folder / "model" / "config.json").is_file():
            resume = (folder / "checkpoints" / "last.ckpt").is_file()
            LOG.info("training %s on '%s' with seed %d into %s", mode, self.dataset, self.seed, folder)
            logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
            run_training(experiment_from_dict(experiment), folder, resume=resume, progress=self.progress,
                         continue_from=continues)  # fmt: skip
        return folder / "model"

    def experiment(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
        """The training experiment of one run on this data set and seed."""
        return {"name": f"{self.dataset}-{mode}", "data": self.data, "model": model,
                "train": {**train, "mode": mode, "seed": self.seed}}  # fmt: skip

    def run_folder(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> Path:
        """The folder of that run, named by a hash of its experiment."""
        return self.models_dir / f"{self.dataset}-{mode}-{params_key(self.experiment(mode, model, train))}"

    def train_from(self, mode: str, spec: dict[str, Any], config: str | os.PathLike[str] | None = None) -> Path:
        """:meth:`train` with the ``model`` and ``train`` sections of ``spec`` on top of those of the training
        ``config`` (a shipped name or a YAML file; its data section is not used: training uses this data set's)."""
        from p2pvision.train.experiment import load_experiment

        base = load_experiment(str(config)).to_dict() if config else {"model": {}, "train": {}}
        model = {**base["model"], **(spec.get("model") or {})}
        train = merge(base["train"], spec.get("train") or {})  # train.trainer arguments merge key by key
        return self.train(mode, model, train)


def wait_for(path: Path, timeout: float = 7 * 24 * 3600.0) -> Path:
    """Wait until ``path`` exists (written atomically by another process); returns it."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"'{path}' did not appear within {timeout:.0f} s")
        time.sleep(2.0)
    return path
