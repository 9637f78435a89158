"""Share of data loading in a P2P fit: augmenting whole batches on the device (now) vs per sample (before).

(a) Profiled fit: ``trainer.fit`` of P2P on the demo config (a P2P epoch: no warm-up, no validation) over
    ``--batches`` training batches with Lightning's ``SimpleProfiler``. Data input is
    ``[_TrainingEpochLoop].train_dataloader_next`` (the loader: indexing, collation and, per sample, the
    augmentation) plus ``batch_to_device`` (the transfer and, now, the whole-batch augmentation in
    ``on_after_batch_transfer``); its share is reported against the fit's wall time and against data input +
    ``run_training_batch``. Validation is left out: its loader is the same plain indexing in both arms and its
    model time would only lower the share.
(b) The training loader alone: milliseconds per batch of iterating it (a fresh iterator, as every epoch starts
    one) and augmenting, per sample vs whole batches, with 0, 1 and 2 loader workers.

The per-sample arm is the code before the change: the training data set applies the same augmentation one sample
at a time (``BatchAugmentation.per_sample``: four ``resized_crop`` calls per sample) and region maps are renumbered
with the per-row sort ``relabel_contiguous`` used then (restored here for this arm only). Arms alternate within
each of ``--rounds`` rounds (order swapped every round); min and median over rounds; /proc/loadavg is recorded
before every measurement, since other jobs share the machine.

Prints Markdown tables; ``--json PATH`` also writes the numbers. Usage:
    python benchmarks/bench_data_loading.py [--batches 20] [--rounds 3] [--quick] [--json results/bench_data.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.profilers import SimpleProfiler

import p2pvision.data.transforms as transforms
from p2pvision.train.data import P2PDataModule, augmentation_generator
from p2pvision.train.experiment import ExperimentConfig, load_experiment
from p2pvision.train.module import P2PLightning

DATA_NEXT = "[_TrainingEpochLoop].train_dataloader_next"
TRANSFER = "[Strategy]SingleDeviceStrategy.batch_to_device"
AUGMENT = "[LightningDataModule]P2PDataModule.on_after_batch_transfer"
STEP = "run_training_batch"


def load_average() -> str:
    """The 1-minute load average (other jobs share the machine), or '?' where /proc is missing."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def sorted_relabel(labels: torch.Tensor) -> torch.Tensor:
    """``relabel_contiguous`` as it was before the presence table: a per-row sort (the per-sample arm's cost)."""
    rows = labels.to(torch.int64).reshape(-1, labels.shape[-2] * labels.shape[-1])
    sorted_rows, order = rows.sort(dim=1)
    starts = (sorted_rows[:, 1:] != sorted_rows[:, :-1]).to(torch.int64)
    rank = torch.cat([torch.zeros_like(rows[:, :1]), starts.cumsum(dim=1)], dim=1)
    return torch.empty_like(rows).scatter_(1, order, rank).reshape(labels.shape)


class PerSampleData(P2PDataModule):
    """The data module before the change: the training set augments each sample; batches are left as they are."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.augment is not None:
            self.datasets["train"].transform = self.augment.per_sample()  # type: ignore[attr-defined]
            self.augment = None


@contextlib.contextmanager
def arm_code(arm: str) -> Iterator[None]:
    """Within the per-sample arm, the transforms renumber regions with the old per-row sort."""
    if arm != "per-sample":
        yield
        return
    current = transforms.relabel_contiguous
    transforms.relabel_contiguous = sorted_relabel  # type: ignore[assignment]
    try:
        yield
    finally:
        transforms.relabel_contiguous = current


def data_module(config: ExperimentConfig, arm: str, workers: int = 0) -> P2PDataModule:
    data_config = config.data.model_copy(update={"num_workers": workers})
    kind = PerSampleData if arm == "per-sample" else P2PDataModule
    data = kind(data_config, config.partition, config.train.batch_size, config.train.seed, progress=False)
    data.prepare_data()
    data.setup()
    return data


def profiled_fit(config: ExperimentConfig, arm: str, batches: int, accelerator: str) -> dict[str, float]:
    """One P2P epoch of ``batches`` batches under SimpleProfiler: seconds of data input, steps and the whole fit."""
    data = data_module(config, arm)
    classes = data.classes
    train = config.train
    L.seed_everything(train.seed, verbose=False)
    module = P2PLightning(
        config.p2p_config(len(classes), classes).to_dict(), train.lr, train.weight_decay, train.seed,
        train.val_tau_grid, warmup_epochs=0, warmup_lr=train.warmup_lr,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), arm_code(arm):
        profiler = SimpleProfiler(dirpath=folder, filename="profile")  # its report goes to a file, not stdout
        warnings.simplefilter("ignore")  # Lightning's notes on workers and logging intervals
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, max_epochs=1, limit_train_batches=batches, limit_val_batches=0,
            num_sanity_val_steps=0, profiler=profiler, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
            default_root_dir=folder,
        )  # fmt: skip
        start = time.perf_counter()
        trainer.fit(module, datamodule=data)
        fit = time.perf_counter() - start
    durations = profiler.recorded_durations
    total = {name: sum(durations.get(name, [])) for name in (DATA_NEXT, TRANSFER, AUGMENT, STEP)}
    if len(durations.get(STEP, [])) != batches:
        raise RuntimeError(f"expected {batches} training batches, the profiler saw {len(durations.get(STEP, []))}")
    data_input = total[DATA_NEXT] + total[TRANSFER]
    return {
        "fit_s": fit,
        "loader_ms": 1000 * total[DATA_NEXT] / batches,
        "transfer_ms": 1000 * total[TRANSFER] / batches,
        "augment_ms": 1000 * total[AUGMENT] / batches,
        "step_ms": 1000 * total[STEP] / batches,
        "share_of_fit": data_input / fit,
        "share_of_loop": data_input / (data_input + total[STEP]),
    }


def loader_pass(config: ExperimentConfig, arm: str, workers: int, batches: int) -> float:
    """Milliseconds per batch of a fresh pass over ``batches`` training batches, augmentation included."""
    data = data_module(config, arm, workers)
    with arm_code(arm):
        start = time.perf_counter()
        for index, batch in enumerate(data.train_dataloader()):
            if data.augment is not None:
                batch = data.augment(batch, augmentation_generator(config.train.seed, 0, 0, index))
            if index + 1 == batches:
                break
        return 1000 * (time.perf_counter() - start) / batches


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="experiment config (name or YAML file)")
    parser.add_argument("--batches", type=int, default=20, help="training batches per profiled fit")
    parser.add_argument("--loader-batches", type=int, default=30, help="batches per loader pass")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (min and median over them)")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, as training)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 batches, 1 round")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.loader_batches, args.rounds = 3, 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):  # Lightning's per-fit notes (GPU available, ...)
        logging.getLogger(name).setLevel(logging.WARNING)
    config = load_experiment(args.config)
    data_module(config, "batched")  # generate the data and region caches before timing anything
    arms = ["per-sample", "batched"]
    fits: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    loads: list[str] = []
    for round_index in range(args.rounds):
        for arm in arms if round_index % 2 == 0 else arms[::-1]:
            loads.append(load_average())
            fits[arm].append(profiled_fit(config, arm, args.batches, args.accelerator))
    loaders = [("per-sample", 0), ("batched", 0), ("batched", 1), ("batched", 2)]
    passes: dict[str, list[float]] = {f"{arm}, {workers} workers": [] for arm, workers in loaders}
    for round_index in range(args.rounds):
        for arm, workers in loaders if round_index % 2 == 0 else loaders[::-1]:
            loads.append(load_average())
            passes[f"{arm}, {workers} workers"].append(loader_pass(config, arm, workers, args.loader_batches))

    print(
        f"# Data loading in a P2P fit ({args.config} config, batch {config.train.batch_size}, "
        f"{config.data.image_size} px, {args.accelerator}, torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()})\n"
        f"{args.batches} batches per fit, {args.rounds} interleaved rounds (min / median); 1-min load average before "
        f"each measurement: {', '.join(loads)}\n"
    )
    keys = ["share_of_fit", "share_of_loop", "loader_ms", "transfer_ms", "augment_ms", "step_ms", "fit_s"]
    print("| arm | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        table[arm] = {key: summary([fit[key] for fit in fits[arm]]) for key in keys}
        cells = [
            f"{row['min']:.1%} / {row['median']:.1%}" if key.startswith("share")
            else f"{row['min']:.1f} / {row['median']:.1f}"
            for key, row in table[arm].items()
        ]  # fmt: skip
        print(f"| {arm} | " + " | ".join(cells) + " |")
    ratios = [before["loader_ms"] + before["transfer_ms"] for before in fits["per-sample"]]
    after = [now["loader_ms"] + now["transfer_ms"] for now in fits["batched"]]
    ratio = [b / a for b, a in zip(ratios, after)]
    print(f"\ndata input per batch, per-sample / batched (same round): min {min(ratio):.1f}x, median "
          f"{statistics.median(ratio):.1f}x\n")  # fmt: skip
    print("| training loader pass | ms per batch (min / median) |\n|---|---|")
    loader_table = {name: summary(values) for name, values in passes.items()}
    for name, row in loader_table.items():
        print(f"| {name} | {row['min']:.1f} / {row['median']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "config": args.config, "batches": args.batches, "rounds": args.rounds, "accelerator": args.accelerator,
            "threads": torch.get_num_threads(), "cores": os.cpu_count(), "load_average": loads, "fits": fits,
            "fit_summary": table, "input_ratio": ratio, "loader_passes": passes, "loader_summary": loader_table,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
