"""Run a benchmark: every cell (data set x method x seed) evaluated once, tables over seeds, the HTML report.

A cell loads (or trains) its method's networks, evaluates its metrics over the data set with a Lightning test
loop (so one config runs on a CPU, several GPUs or nodes: ``hardware`` in the config; each process evaluates a
shard and the metrics add up their sums), keeps the maps of the first ``stored_images`` images, and writes
``cells/<data set>/<method>/seed<k>.json`` (+ ``.safetensors``). A cell whose file exists with the same
settings is not recomputed, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from p2pvision.benchmark.config import BenchmarkConfig, DatasetSpec, MethodSpec
from p2pvision.benchmark.data import EvaluationDataset, open_dataset
from p2pvision.benchmark.methods import Context, Method
from p2pvision.cache import params_key, write_json
from p2pvision.classifier import Classifier
from p2pvision.explanation import Explanation
from p2pvision.metrics.base import EvalBatch, Metric
from p2pvision.metrics.registry import make_metric
from p2pvision.metrics.similarity import MapSimilarity
from p2pvision.removal import removal_weights_digest
from p2pvision.report.examples import load_examples, save_examples

LOG = logging.getLogger(__name__)  # progress lines; the CLI prints them
CELL_FORMAT = 2  # part of every cell's key: a new record format recomputes old cells

_T = TypeVar("_T")


@runtime_checkable
class _Histogram(Protocol):
    """A metric that also keeps a distribution (:meth:`~p2pvision.metrics.prediction.KeptFraction.histogram`)."""

    def histogram(self) -> dict[str, list[float]]: ...


def _timed(function: Callable[[], _T], device: torch.device) -> tuple[_T, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - started


def run_batch(
    method: Method, batch: dict[str, Any], device: torch.device, labelled: bool
) -> tuple[Explanation, EvalBatch]:
    """The method's :class:`Explanation` of a batch (its ``seconds`` the wall time of the call) and what the
    evaluation knows beside it: images, ground truth, the classifier and the time of a plain forward pass."""
    images = batch["image"].to(device)
    explanation, seconds = _timed(lambda: method.explain(images), device)
    explanation.seconds = seconds
    model = method.classifier
    with torch.no_grad():
        _, reference_seconds = _timed(lambda: model(images), device)
    mask, objects = batch.get("mask"), batch.get("object_mask")
    distractor = objects is not None and mask is not None and not torch.equal(objects, mask)
    truth = EvalBatch(images, labels=batch["label"].to(device) if labelled else None,
                      mask=mask.to(device) if mask is not None else None,
                      object_mask=objects.to(device) if distractor and objects is not None else None, model=model,
                      reference_seconds=reference_seconds)  # fmt: skip
    return explanation, truth


class EvaluationModule(L.LightningModule):
    """Lightning test loop of one cell: each process takes every world_size-th image (no padding, so sums are
    exact) and updates the metrics that apply to the method, whose states Lightning keeps on the device and adds
    up over processes. The outputs of the first ``stored`` images (those of this process) are kept on the CPU."""

    def __init__(
        self,
        method: Method,
        metrics: list[Metric],
        dataset: EvaluationDataset,
        batch_size: int,
        labelled: bool,
        stored: int,
    ) -> None:
        super().__init__()
        self.method, self.dataset, self.batch_size, self.labelled = method, dataset, batch_size, labelled
        self.networks = nn.ModuleList(method.networks())
        self.metrics = nn.ModuleList(metrics)  # registered, so that Lightning moves their states to the device
        self.metric_list = list(metrics)  # the same objects, typed
        self.stored = stored
        self.kept: list[dict[str, Tensor]] = []
        self.class_names: list[str] | None = None

    def test_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return DataLoader(Subset(self.dataset, range(rank, len(self.dataset), world)), batch_size=self.batch_size)

    def test_step(self, batch: dict[str, Any], batch_index: int) -> None:
        explanation, truth = run_batch(self.method, batch, self.device, self.labelled)
        for metric in self.metric_list:
            if metric.applicable(explanation, truth):
                metric.update(explanation, truth)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        positions = torch.arange(len(explanation)) + batch_index * self.batch_size
        rows = (rank + positions * world < self.stored).nonzero().flatten()
        if len(rows):
            fields = {"images": truth.images, "pixel_map": explanation.pixel_map, "keep": explanation.keep,
                      "mask": truth.mask, "predicted": explanation.target, "labels": truth.labels}  # fmt: skip
            self.kept.append({name: value[rows.to(value.device)].detach().cpu()
                              for name, value in fields.items() if value is not None})  # fmt: skip
            self.class_names = truth.model.class_names if isinstance(truth.model, Classifier) else None


def _device(hardware: dict[str, Any]) -> torch.device:
    """The device of this process (its own GPU under DDP)."""
    if hardware["accelerator"] in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def evaluate_cell(
    method: Method,
    metrics: list[Metric],
    dataset: EvaluationDataset,
    config: BenchmarkConfig,
    labelled: bool,
    progress: bool,
) -> tuple[dict[str, Any], EvaluationModule]:
    """Evaluate ``metrics`` (those that apply to the method) over ``dataset``; returns the cell record and the
    module, which holds the outputs of the first ``stored_images`` images."""
    device = _device(config.hardware)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stored = max(config.stored_images, config.examples)
    module = EvaluationModule(method, metrics, dataset, config.batch_size, labelled, stored)
    trainer = L.Trainer(
        **config.hardware, logger=False, enable_checkpointing=False, enable_progress_bar=progress,
        enable_model_summary=False, inference_mode=False, use_distributed_sampler=False,
    )  # fmt: skip
    started = time.perf_counter()
    trainer.test(module, verbose=False)
    seconds = time.perf_counter() - started
    applicable = [metric for metric in metrics if metric.update_count > 0]  # the same on every process
    values, directions, groups, curves = {}, {}, {}, {}
    for metric in applicable:
        values.update(metric.compute())
        directions.update(metric.directions())
        groups.update(dict.fromkeys(metric.keys, metric.category))
        curve = metric.curve()
        if curve is not None:
            curves[f"{metric.name}_{metric.mode}"] = curve
    record = {
        "values": values,
        "directions": directions,
        "groups": groups,
        "curves": curves,
        "metrics": [metric.settings for metric in applicable],
        "images": len(dataset),
        "seconds": seconds,
        "device": str(device),
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    histogram = next((m.histogram() for m in applicable if isinstance(m, _Histogram)), None)
    if histogram is not None:
        record["kept_histogram"] = histogram
    return record, module


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))


def aggregate(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, method, metric key): mean and sample standard deviation over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[(cell["dataset"], cell["method"])].append(cell)
    rows = []
    for (dataset, method), group in groups.items():
        for key, direction in group[0]["directions"].items():
            values = [cell["values"].get(key) for cell in group]
            mean, std = _mean_std(values)
            rows.append({"dataset": dataset, "method": method, "group": group[0]["groups"][key], "metric": key,
                         "higher_is_better": direction, "mean": mean, "std": std, "seeds": len(values)})  # fmt: skip
    return rows


def seed_similarity(cells: list[dict[str, Any]], out: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of map similarity between seeds (every pair) of each method with maps on the stored images: mean ±
    sample standard deviation over the pairs of seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        groups[(cell["dataset"], cell["method"])].append(cell)
    rows = []
    for (dataset, method), group in groups.items():
        stored = [load_examples(out / cell["examples"]).get("pixel_map") for cell in group]
        maps = [m for m in stored if m is not None]
        if len(group) < 2 or len(maps) < len(stored):
            continue
        results = []
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                metric = MapSimilarity(**params)
                zeros = torch.zeros(len(maps[i]), dtype=torch.int64)
                metric.update(Explanation("stored", zeros, zeros, pixel_map=maps[i]),
                              EvalBatch(maps[i], reference_map=maps[j]))  # fmt: skip
                results.append(metric.compute())
        for key in results[0]:
            mean, std = _mean_std([result[key] for result in results])
            rows.append({"dataset": dataset, "method": method, "group": "stability across seeds",
                         "metric": f"seed_{key}", "higher_is_better": True, "mean": mean, "std": std,
                         "seeds": len(maps)})  # fmt: skip
    return rows


def _keyed(settings: Any) -> Any:
    """``settings`` with the weights digest next to every ``removal: learned:PATH`` / ``lama:PATH`` in them: a cell
    computed with an inpainter is recomputed when the file at PATH is retrained."""
    if isinstance(settings, list):
        return [_keyed(value) for value in settings]
    if not isinstance(settings, dict):
        return settings
    keyed = {key: _keyed(value) for key, value in settings.items()}
    removal = settings.get("removal")
    digest = removal_weights_digest(removal) if isinstance(removal, str) else None
    if digest is not None:
        keyed["removal_sha256"] = digest
    return keyed


def _similarity_params(spec: DatasetSpec) -> dict[str, Any] | None:
    for metric in spec.metrics:
        if (metric if isinstance(metric, str) else metric.get("name")) == "map_similarity":
            built = make_metric(metric)
            if not isinstance(built, MapSimilarity):
                raise TypeError(f"metric map_similarity built a {type(built).__name__}, not MapSimilarity")
            return {"measures": list(built.measures), "hog_cell": built.hog_cell}
    return None


class _Runner:
    """Loads methods per (data set, seed), evaluates cells that are not done yet and collects the records."""

    def __init__(self, config: BenchmarkConfig, out: Path, progress: bool) -> None:
        self.config, self.out, self.progress = config, out, progress
        self.total = config.cell_count()
        self.done = self.computed = 0
        self.classes: dict[str, list[str] | None] = {}

    def cell_key(self, dataset: DatasetSpec, method: MethodSpec, seed: int) -> str:
        """Hash of everything a cell's result depends on, including the methods it uses (``depends_on``)."""
        names = method.build().depends_on
        depends = {name: _keyed(self.config.methods[name].settings) for name in names if name in self.config.methods}
        described = {key: value for key, value in dataclasses.asdict(dataset).items() if key != "seeds"}
        return params_key({"dataset": described, "method": _keyed(method.settings), "depends": depends,
                           "seed": seed, "stored": self.config.stored_images, "format": CELL_FORMAT})  # fmt: skip

    def load(self, spec: MethodSpec, context: Context) -> Method:
        if spec.name not in context.methods:
            method = spec.build()
            runs_here = {m.name: m for m in self.config.methods_for(context.dataset)}
            for name in method.depends_on:
                if name in runs_here:
                    self.load(runs_here[name], context)
            L.seed_everything(context.seed, verbose=False)
            method.load(context)
            context.methods[spec.name] = method
        return context.methods[spec.name]

    def run_dataset(self, spec: DatasetSpec) -> list[dict[str, Any]]:
        dataset = open_dataset(spec.data, spec.split, spec.images)
        self.classes[spec.name] = dataset.classes
        labelled = dataset.classes is not None
        records = []
        for seed in self.config.seeds_for(spec.name):
            context = Context(spec.name, spec.data, dataset.classes, seed, self.out / "models", progress=self.progress)
            for method_spec in self.config.methods_for(spec.name, seed):
                records.append(self.run_cell(spec, method_spec, seed, context, dataset, labelled))
        return records

    def run_cell(self, spec, method_spec, seed, context, dataset, labelled) -> dict[str, Any]:  # noqa: ANN001
        self.done += 1
        stem = Path("cells") / spec.name / method_spec.name / f"seed{seed}"
        path, key = self.out / f"{stem}.json", self.cell_key(spec, method_spec, seed)
        header = f"[{self.done}/{self.total}] {spec.name} / {method_spec.name} / seed {seed}"
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("key") == key:
                LOG.info("%s: done earlier (%s)", header, path)
                return record
        method = self.load(method_spec, context)
        metrics = [make_metric(metric) for metric in spec.metrics]
        L.seed_everything(seed, verbose=False)
        record, module = evaluate_cell(method, metrics, dataset, self.config, labelled, self.progress)
        names = dataset.classes or module.class_names  # the classifier's (ImageNet's on the photos) if no labels
        record.update({"key": key, "dataset": spec.name, "method": method_spec.name, "seed": seed,
                       "examples": f"{stem}.safetensors", "method_settings": method.settings,
                       "class_names": names})  # fmt: skip
        if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # lightning sets rank on the function
            save_examples(module.kept, self.out / record["examples"])
            write_json(path, record)
        self.computed += 1
        LOG.info("%s: %d images in %.1f s", header, record["images"], record["seconds"])
        return record


def _quiet_lightning() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def run_benchmark(config: BenchmarkConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Evaluate every cell not done yet; write ``results.json``, ``results.csv``, ``results.md`` and
    ``report.html`` into ``out``; returns the results."""
    from p2pvision.report.html import write_report
    from p2pvision.report.tables import write_tables

    out = Path(out)
    _quiet_lightning()
    started = time.perf_counter()
    runner = _Runner(config, out, progress)
    cells, rows, stability = [], [], {}
    for spec in config.datasets.values():
        records = runner.run_dataset(spec)
        cells += records
        rows += aggregate(records)
        params = _similarity_params(spec)
        if params is not None:
            rows += seed_similarity(records, out, params)
            stability[spec.name] = {**params, "images": min(config.stored_images, records[0]["images"]),
                                    "pairs": "every pair of seeds"}  # fmt: skip
    results = {
        "name": config.name,
        "seeds": config.seeds,
        "datasets": {name: {**dataclasses.asdict(spec), "classes": runner.classes.get(name)} for name, spec in
                     config.datasets.items()},
        "methods": {name: spec.settings for name, spec in config.methods.items()},
        "hardware": config.hardware,
        "examples": config.examples,
        "cells": cells,
        "table": rows,
        "stability": stability,
        "seconds": time.perf_counter() - started,
        "computed": runner.computed,
        "versions": {"torch": torch.__version__},
    }  # fmt: skip
    if rank_zero_only.rank == 0:  # type: ignore[attr-defined]  # lightning sets rank on the function
        write_json(out / "results.json", results)
        write_tables(results, out)
        write_report(results, out)
    return results
