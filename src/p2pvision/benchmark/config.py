"""The benchmark config: methods x data sets x seeds, the metrics, and the hardware, in one YAML file.

::

    name: cpu
    seeds: [0, 1, 2]
    batch_size: 32
    examples: 6            # images per data set shown with every method's overlay in the report
    stored_images: 16      # images whose maps are kept per cell (map similarity across seeds)
    hardware: {accelerator: cpu, devices: 1, num_nodes: 1, strategy: auto, precision: 32-true}
    metrics:               # each a name or {name: ..., params}; see p2pvision.metrics.metric_names()
      - accuracy
      - {name: rise, mode: deletion, steps: 16}
    datasets:
      object:
        data: {source: semisynthetic, task: object, image_size: 64}   # as in training configs, or the name
                                                                        # of one (its data section)
        split: test
        images: 200        # the first 200 of the split (default: all)
        seeds: [0]         # optional: replaces the seeds above for this data set
        metrics: [...]     # optional: replaces (or with `extra_metrics:` extends) the list above
      photos:
        data: {source: photos, image_size: 224}
    methods:
      blackbox: {kind: blackbox, classifier: test_resnet, train: {epochs: 2}, datasets: [object]}
      grad_cam: {kind: explainer, explainer: grad_cam, explains: blackbox}
      p2p: {kind: p2p, model: {...}, train: {...}, sweep: {delta: [0.9, 0.99]}}

A method runs on every data set unless it lists ``datasets``, and with every seed of the data set unless it lists
``seeds`` (a subset: e.g. a costly baseline on one seed); ``sweep`` expands it into one method per value
(``p2p@delta=0.9``...), which share trained networks. Values may be overridden with ``key=value`` strings.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from p2pvision.benchmark.methods import METHODS, Method
from p2pvision.errors import ConfigError
from p2pvision.metrics.registry import make_metric
from p2pvision.train.experiment import load_experiment

SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "benchmark"
TOP_LEVEL = ("name", "seeds", "batch_size", "examples", "stored_images", "hardware", "metrics", "datasets", "methods")
HARDWARE = {"accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "32-true"}


@dataclass
class DatasetSpec:
    """One data set of the benchmark (see the module docstring)."""

    name: str
    data: dict[str, Any]
    split: str = "test"
    images: int | None = None
    metrics: list[Any] = field(default_factory=list)
    seeds: list[int] | None = None  # replaces the benchmark's seeds (e.g. one seed where nothing is random)


@dataclass
class MethodSpec:
    """One method: its name, kind, settings, the data sets it runs on (None: all) and its sweep family."""

    name: str
    kind: str
    spec: dict[str, Any]
    datasets: list[str] | None = None
    family: str | None = None
    variant: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] | None = None  # a subset of the data set's seeds (e.g. where training is too costly)

    def build(self) -> Method:
        return METHODS[self.kind](self.name, self.spec)

    @property
    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.spec, "family": self.family or self.name, "variant": self.variant}


@dataclass
class BenchmarkConfig:
    name: str
    seeds: list[int]
    datasets: dict[str, DatasetSpec]
    methods: dict[str, MethodSpec]
    batch_size: int = 32
    examples: int = 6
    stored_images: int = 16
    hardware: dict[str, Any] = field(default_factory=lambda: dict(HARDWARE))

    def seeds_for(self, dataset: str) -> list[int]:
        """The seeds ``dataset`` is evaluated with."""
        return self.datasets[dataset].seeds or self.seeds

    def only(self, datasets: list[str]) -> BenchmarkConfig:
        """The same benchmark on some of its data sets."""
        unknown = sorted(set(datasets) - set(self.datasets))
        if unknown:
            raise ConfigError(f"data set(s) {', '.join(unknown)} not in benchmark '{self.name}': "
                              f"choose from {', '.join(self.datasets)}")  # fmt: skip
        return dataclasses.replace(self, datasets={name: self.datasets[name] for name in datasets})

    def methods_for(self, dataset: str, seed: int | None = None) -> list[MethodSpec]:
        """The methods that run on ``dataset`` (with ``seed``, if given), in config order."""
        return [m for m in self.methods.values() if (m.datasets is None or dataset in m.datasets)
                and (seed is None or m.seeds is None or seed in m.seeds)]  # fmt: skip

    def cell_count(self) -> int:
        """How many (data set, method, seed) cells the benchmark has."""
        return sum(len(self.methods_for(name, seed)) for name in self.datasets for seed in self.seeds_for(name))


def _expand_method(name: str, entry: Any) -> list[MethodSpec]:
    if not isinstance(entry, dict) or entry.get("kind") not in METHODS:
        kind = entry.get("kind") if isinstance(entry, dict) else entry
        raise ConfigError(f"method '{name}': kind must be one of {', '.join(METHODS)}, got {kind!r}")
    entry = dict(entry)
    kind, datasets, sweep = entry.pop("kind"), entry.pop("datasets", None), entry.pop("sweep", None)
    seeds = _seeds(entry, f"method '{name}'") if "seeds" in entry else None
    entry.pop("seeds", None)
    if not sweep:
        specs = [MethodSpec(name, kind, entry, datasets, seeds=seeds)]
    else:
        keys = list(sweep)
        specs = []
        for values in itertools.product(*(sweep[key] for key in keys)):
            variant = dict(zip(keys, values))
            label = ",".join(f"{key}={value}" for key, value in variant.items())
            specs.append(MethodSpec(f"{name}@{label}", kind, {**entry, **variant}, datasets, name, variant, seeds))
    for spec in specs:
        spec.build()  # checks the settings now
    return specs


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. seeds=[0,1])")
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        target[parts[-1]] = yaml.safe_load(raw)
    return data


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file, or the name of a shipped benchmark config (``cpu``, ``cifar10``...)."""
    path = Path(path)
    if not path.is_file() and path.suffix == "" and (SHIPPED / f"{path}.yaml").is_file():
        path = SHIPPED / f"{path}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
        raise ConfigError(f"benchmark config '{path}' does not exist: give a YAML file or a shipped name ({shipped})")
    return path


def load_benchmark(path: str | Path, overrides: list[str] | None = None) -> BenchmarkConfig:
    """Read and check a benchmark config (see the module docstring)."""
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"benchmark config '{path}' is not valid YAML: {' '.join(str(exc).split())}") from exc
    data = json.loads(json.dumps(data))  # YAML aliases become copies: an override changes one place only
    for entry in (data.get("datasets") or {}).values():  # named data sections first, so overrides reach into them
        if isinstance(entry, dict) and isinstance(entry.get("data"), str):
            entry["data"] = load_experiment(entry["data"]).to_dict()["data"]
    return benchmark_from_dict(_apply_overrides(data, overrides or []), str(path))


def benchmark_from_dict(data: dict[str, Any], source: str = "config") -> BenchmarkConfig:
    unknown = sorted(set(data) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(TOP_LEVEL)}")
    if not data.get("datasets") or not data.get("methods"):
        raise ConfigError(f"{source}: needs datasets and methods")
    hardware = {**HARDWARE, **(data.get("hardware") or {})}
    if set(hardware) != set(HARDWARE):
        raise ConfigError(f"{source}: hardware takes {', '.join(HARDWARE)}")
    default_metrics = list(data.get("metrics") or [])
    datasets = {}
    for name, entry in data["datasets"].items():
        entry = dict(entry or {})
        if "data" not in entry:
            raise ConfigError(f"{source}: data set '{name}' needs a data section (e.g. {{source: semisynthetic}})")
        if isinstance(entry["data"], str):  # the data section of a training config
            entry["data"] = load_experiment(entry["data"]).to_dict()["data"]
        metrics = list(entry.pop("metrics", default_metrics)) + list(entry.pop("extra_metrics", []))
        extra = sorted(set(entry) - {"data", "split", "images", "seeds"})
        if extra:
            raise ConfigError(f"{source}: data set '{name}': unknown setting(s) {', '.join(extra)}")
        for metric in metrics:
            make_metric(metric)  # checks names and parameters now
        split, images = entry.get("split", "test"), entry.get("images")
        seeds = _seeds(entry, f"{source}: data set '{name}'") if "seeds" in entry else None
        datasets[name] = DatasetSpec(name, dict(entry["data"]), split, images, metrics, seeds)
    methods: dict[str, MethodSpec] = {}
    for name, entry in data["methods"].items():
        for spec in _expand_method(name, entry):
            methods[spec.name] = spec
    for spec in methods.values():
        for dataset in spec.datasets or []:
            if dataset not in datasets:
                raise ConfigError(f"{source}: method '{spec.name}' names data set '{dataset}', which is not defined")
    config = BenchmarkConfig(
        name=str(data.get("name", Path(source).stem)), seeds=_seeds(data, source), datasets=datasets, methods=methods,
        batch_size=int(data.get("batch_size", 32)), examples=int(data.get("examples", 6)),
        stored_images=int(data.get("stored_images", 16)), hardware=hardware,
    )  # fmt: skip
    for dataset in datasets:
        here = {spec.name for spec in config.methods_for(dataset)}
        for spec in config.methods_for(dataset):
            needs = spec.build().depends_on
            if needs and not here.intersection(needs):
                raise ConfigError(f"{source}: method '{spec.name}' uses {', '.join(needs)}, none of which runs on "
                                  f"data set '{dataset}': list the data sets it runs on (datasets: [...])")  # fmt: skip
    return config


def _seeds(data: dict[str, Any], source: str) -> list[int]:
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{source}: seeds must be a list of integers, got {seeds!r}")
    return seeds
