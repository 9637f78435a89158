"""The benchmark config: methods x data sets x seeds, the metrics, and the hardware, in one YAML file.

::

    name: cpu
    seeds: [0, 1, 2]
    batch_size: 32
    examples: 6            # images per data set shown with every method's overlay in the report
    stored_images: 16      # images whose maps are kept per cell (map similarity across seeds)
    hardware: {accelerator: cpu, devices: 1, precision: 32-true}   # arguments of Lightning's Trainer
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
(``p2p@delta=0.9``...), which share trained networks; another method uses one of them by that name
(``explains: p2p@delta=0.9``), or is swept over them (``sweep: {explains: [p2p@delta=0.8, p2p@delta=0.9]}``).
Values may be overridden with ``key=value`` strings.

Paths in the file (``checkpoint``, ``config`` and ``data`` given as YAML files, ``weights`` and the model's
``classifier_weights``/``selector_weights`` given as files, ``data.root``) are relative to the file's folder (a
shipped config's: its own); paths in ``key=value`` overrides are relative to the working directory.

Everything is checked when the config is loaded, before any data or training: the keys and values of every
section (with ranges), the metrics, the methods' settings (each kind refuses options it does not take; the
``model``, ``train`` and explainer ``params`` sections are checked as in training and explaining), and the
training experiment every trained method will run on each of its data sets.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator

from p2pvision.benchmark.data import PHOTOS
from p2pvision.benchmark.methods import METHODS, Method
from p2pvision.config import SHIPPED as CONFIGS
from p2pvision.config import (
    Fraction,
    Int,
    Name,
    NonNegativeInt,
    OpenFraction,
    PositiveInt,
    Section,
    check_arguments,
    error_at,
    format_error,
    merge,
    message_at,
    nested,
    prefixed,
    read_config,
    resolve_config,
    validate,
)
from p2pvision.config import apply_overrides as _apply_overrides
from p2pvision.errors import ConfigError
from p2pvision.metrics.registry import make_metric
from p2pvision.models.p2p.config import MODEL_SECTION, check_partition
from p2pvision.train.experiment import (
    DataConfig,
    TrainConfig,
    TrainerArgs,
    experiment_from_dict,
    load_experiment,
    migrate,
)

SHIPPED = CONFIGS / "benchmark"  # the shipped benchmark configs
Seed = Annotated[Int, Field(ge=0, le=2**32 - 1)]
Seeds = Annotated[list[Seed], Field(min_length=1)]


def _method_kinds() -> list[str]:
    names = getattr(METHODS, "names", None)
    return list(names()) if callable(names) else list(METHODS)


def _method_class(kind: str) -> type[Method]:
    return METHODS.get(kind)


# Trainer arguments the evaluation loop sets itself.
ENGINE_SETS = ("logger", "callbacks", "enable_checkpointing", "enable_progress_bar", "enable_model_summary",
               "inference_mode", "use_distributed_sampler", "default_root_dir")  # fmt: skip


class EvaluationTrainerArgs(TrainerArgs):
    """``hardware``: arguments of Lightning's Trainer for the evaluation loop (what the engine sets is refused)."""

    reserved: ClassVar[dict[str, str]] = dict.fromkeys(ENGINE_SETS, "the evaluation loop sets it")


class PhotosData(Section):
    """``source: photos``: the photos bundled with scikit-image and scikit-learn (no labels, no masks)."""

    source: Literal["photos"]
    image_size: Annotated[Int, Field(ge=8)] = 224
    names: Annotated[list[Literal[PHOTOS]], Field(min_length=1)] = list(PHOTOS)  # type: ignore[valid-type]


def _data_kind(value: Any) -> str:
    return "photos" if isinstance(value, dict) and value.get("source") == "photos" else "data"


DataSection = Annotated[
    Annotated[DataConfig, Tag("data")] | Annotated[PhotosData, Tag("photos")], Discriminator(_data_kind)
]


def _check_metrics(metrics: list[Any]) -> list[Any]:
    for index, metric in enumerate(metrics):
        try:
            make_metric(metric)
        except ConfigError as exc:
            raise message_at(index, metric, str(exc)) from None
    return metrics


Metrics = list[Name | dict[str, Any]]


class DatasetEntry(Section):
    """One entry of ``datasets`` (see the module docstring)."""

    data: DataSection
    split: Literal["train", "val", "test"] = "test"
    images: PositiveInt | None = None  # the first N images of the split (default: all)
    seeds: Seeds | None = None  # replaces the benchmark's seeds (e.g. one seed where nothing is random)
    metrics: Metrics | None = None  # replaces the benchmark's metrics
    extra_metrics: Metrics = []  # added to them

    _metrics = field_validator("metrics", "extra_metrics")(lambda value: value if value is None else
                                                           _check_metrics(value))  # fmt: skip


def _check_params(explainer: str, params: dict[str, Any]) -> None:
    """An explainer's ``params``: names its constructor takes (``partition`` for its partitioner), values that fit
    their annotations, a known partition and removal (ranges are the explainer's to check when it is built)."""
    from p2pvision.explain import EXPLAINERS

    if explainer not in EXPLAINERS:
        return  # the method class names the explainers
    cls = EXPLAINERS.get(explainer)
    parameters = inspect.signature(cls).parameters.values()
    # an explainer with **options (captum: the Captum method's own options) checks those keys itself
    open_keys = [key for key in params if key not in EXPLAINERS.parameters(explainer)] if any(
        parameter.kind is parameter.VAR_KEYWORD for parameter in parameters) else []  # fmt: skip
    check_arguments(cls, params, skip=("model", "partitioner"), extra=("partition", *open_keys))
    problem = cls.option_problem(params) if open_keys or "attribution" in params else None
    if problem is not None:
        raise error_at(problem[0], problem[1], problem[2])
    if "partition" in params:
        if not isinstance(params["partition"], dict):
            raise error_at("partition", params["partition"], "must be a mapping, e.g. {name: grid, grid: 8}")
        try:
            check_partition(params["partition"])
        except ValidationError as exc:
            raise prefixed(exc, "partition") from None
    if isinstance(params.get("removal"), str):
        from p2pvision.removal import removal_names, split_removal

        try:  # learned:PATH, lama:PATH: a removal with its file
            name = split_removal(params["removal"])[0]
        except ConfigError as exc:
            raise error_at("removal", params["removal"], str(exc)) from None
        if name not in removal_names():
            raise error_at("removal", params["removal"], f"allowed: {', '.join(removal_names())}")


class MethodEntry(Section, extra="allow"):
    """One entry of ``methods``: the keys the engine uses (kind, datasets, seeds, sweep), and the options several
    kinds share, checked here so that a mistake shows before any training; each kind's class refuses the
    options it does not take, and checks its own."""

    kind: Name
    datasets: Annotated[list[Name], Field(min_length=1)] | None = None
    seeds: Seeds | None = None
    sweep: dict[Name, Annotated[list[Any], Field(min_length=1)]] | None = None
    config: Name | None = None  # a training config (shipped name or YAML; may contain {dataset}, {seed})
    checkpoint: Name | None = None
    model: nested(MODEL_SECTION, partial=True) = None  # type: ignore[valid-type]
    train: nested(TrainConfig, partial=True) = None  # type: ignore[valid-type]
    delta: OpenFraction | None = None
    tau: Fraction | None = None
    fraction: Fraction | None = None
    search: Literal["grid", "endpoints", "bisection"] | None = None
    explainer: Name | None = None
    explains: Name | Annotated[list[Name], Field(min_length=1)] | None = None
    params: dict[str, Any] | None = None
    classifier: Name | None = None
    weights: Name | None = None
    match: Name | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        kinds = _method_kinds()
        if value not in kinds:
            raise error_at((), value, f"allowed: {', '.join(kinds)}")
        return value

    @field_validator("train", mode="before")
    @classmethod
    def _moved(cls, value: Any) -> Any:  # Trainer arguments written in the old train layout
        return migrate({"train": value}, "benchmark method")["train"] if isinstance(value, dict) else value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value is not None and isinstance(info.data.get("explainer"), str):
            _check_params(info.data["explainer"], value)
        return value


class BenchmarkSchema(Section):
    """The whole benchmark config (see the module docstring)."""

    name: Name | None = None
    seeds: Seeds = [0]
    batch_size: PositiveInt = 32
    examples: NonNegativeInt = 6  # images per data set shown with every method's overlay in the report
    stored_images: PositiveInt = 16  # images whose maps are kept per cell (map similarity across seeds)
    hardware: EvaluationTrainerArgs = Field(default_factory=EvaluationTrainerArgs)
    metrics: Metrics = []
    datasets: Annotated[dict[Name, DatasetEntry], Field(min_length=1)]
    methods: Annotated[dict[Name, MethodEntry], Field(min_length=1)]

    _metrics = field_validator("metrics")(_check_metrics)


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
        return _method_class(self.kind)(self.name, self.spec)

    @property
    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.spec, "family": self.family or self.name, "variant": self.variant}

    @property
    def trains(self) -> bool:
        """Whether the method trains networks on the benchmark's data (a training config or sections)."""
        return any(key in self.spec for key in ("config", "model", "train"))


@dataclass
class BenchmarkConfig:
    name: str
    seeds: list[int]
    datasets: dict[str, DatasetSpec]
    methods: dict[str, MethodSpec]
    batch_size: int = 32
    examples: int = 6
    stored_images: int = 16
    hardware: dict[str, Any] = field(default_factory=lambda: EvaluationTrainerArgs().model_dump())

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


ENGINE_KEYS = ("kind", "datasets", "sweep", "seeds")


def _expand_method(name: str, raw: dict[str, Any], entry: MethodEntry) -> list[MethodSpec]:
    given = entry.model_dump(exclude_unset=True)
    spec = {key: value for key, value in given.items() if key not in ENGINE_KEYS}
    options: tuple[str, ...] | None = getattr(_method_class(entry.kind), "options", None)
    unknown = [key for key in spec if options is not None and key not in options]
    if unknown:
        known = [*ENGINE_KEYS, *(options or ())]
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown key methods.{name}.{unknown[0]}; known keys of methods.{name} (kind "
                          f"{entry.kind}): {', '.join(known)}{hint}")  # fmt: skip
    if not entry.sweep:
        specs = [MethodSpec(name, entry.kind, spec, entry.datasets, seeds=entry.seeds)]
    else:
        keys = list(entry.sweep)
        specs = []
        for values in itertools.product(*(entry.sweep[key] for key in keys)):
            variant = dict(zip(keys, values))
            unswept = {key: value for key, value in raw.items() if key != "sweep"}
            try:  # each value of the sweep as if it were written in the entry
                checked = MethodEntry.model_validate({**unswept, **variant}).model_dump(exclude_unset=True)
            except ValidationError as error:
                message = format_error(error, MethodEntry, {**unswept, **variant}, f"methods.{name}")
                for key in variant:
                    message = message.replace(f"methods.{name}.{key}: got", f"methods.{name}.sweep.{key}: got")
                raise ConfigError(message) from None
            label = ",".join(f"{key}={value}" for key, value in variant.items())
            spec = {key: value for key, value in checked.items() if key not in ENGINE_KEYS}
            specs.append(MethodSpec(f"{name}@{label}", entry.kind, spec, entry.datasets, name, variant, entry.seeds))
    for method in specs:
        method.build()  # the kind's own checks
    return specs


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys, values parsed as YAML) to a benchmark dict (returns a copy)."""
    return _apply_overrides(data, overrides, example="seeds=[0,1]")


def resolve_config_path(path: str | Path) -> Path:
    """A YAML file, or the name of a shipped benchmark config (``cpu``, ``cifar10``...)."""
    return resolve_config(path, SHIPPED, "benchmark config")


def _named_data(name: str, where: str) -> dict[str, Any]:
    """The data section of the training config ``name``."""
    try:
        return load_experiment(name).to_dict()["data"]
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _resolve_named_data(data: dict[str, Any]) -> dict[str, Any]:
    datasets = data.get("datasets")
    if isinstance(datasets, dict):
        for key, entry in datasets.items():
            if isinstance(entry, dict) and isinstance(entry.get("data"), str):
                entry["data"] = _named_data(entry["data"], f"datasets.{key}.data")
    return data


NAMED = ("package", "hub")  # weights that are not files


def _absolute(value: Any, folder: Path, kind: str) -> Any:
    """``value`` of a path key made absolute against ``folder`` where it is a relative path: always for a
    ``"path"``, for a ``"config"`` only when it looks like a file (a separator or a .yaml/.yml suffix; a bare name
    is a shipped config), for ``"weights"`` unless it is None, "package" or "hub"."""
    if not isinstance(value, str) or not value:
        return value
    if kind == "config" and not ("/" in value or os.sep in value or value.endswith((".yaml", ".yml"))):
        return value
    if kind == "weights" and value in NAMED:
        return value
    path = Path(value).expanduser()
    return value if path.is_absolute() and value == str(path) else str(path if path.is_absolute() else folder / path)


METHOD_PATHS = {"checkpoint": "path", "config": "config", "weights": "weights"}
MODEL_PATHS = {"classifier_weights": "weights", "selector_weights": "weights"}


def _resolve_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``data``, read from a file in ``folder``, with the relative paths it writes made absolute against ``folder``
    (the keys are those the module docstring lists; swept values are resolved once expanded, so that the variants
    keep the names written: :func:`_resolve_swept_paths`). Changes ``data`` in place and returns it."""
    methods = data.get("methods")
    for entry in methods.values() if isinstance(methods, dict) else ():
        if not isinstance(entry, dict):
            continue
        _resolve_method_paths(entry, folder)
    datasets = data.get("datasets")
    for entry in datasets.values() if isinstance(datasets, dict) else ():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("data"), str):
            entry["data"] = _absolute(entry["data"], folder, "config")
        elif isinstance(entry.get("data"), dict) and "root" in entry["data"]:
            entry["data"]["root"] = _absolute(entry["data"]["root"], folder, "path")
    return data


def _resolve_method_paths(entry: dict[str, Any], folder: Path) -> None:
    """The path keys of one method entry (and of its model section) made absolute against ``folder``, in place."""
    for key, kind in METHOD_PATHS.items():
        if key in entry:
            entry[key] = _absolute(entry[key], folder, kind)
    if isinstance(entry.get("model"), dict):
        for key, kind in MODEL_PATHS.items():
            if key in entry["model"]:
                entry["model"][key] = _absolute(entry["model"][key], folder, kind)


def _resolve_swept_paths(methods: dict[str, MethodSpec], folder: Path) -> None:
    """The path values a sweep gave (``sweep: {checkpoint: [a, b]}``) made absolute against ``folder``."""
    for spec in methods.values():
        if any(key in spec.variant for key in (*METHOD_PATHS, "model")):
            _resolve_method_paths(spec.spec, folder)


def load_benchmark(path: str | Path, overrides: list[str] | None = None) -> BenchmarkConfig:
    """Read and check a benchmark config (see the module docstring)."""
    path, data = read_config(path, SHIPPED, "benchmark config")
    data = json.loads(json.dumps(data, default=str))  # YAML aliases become copies: an override changes one place
    folder = Path(path).resolve().parent
    data = _resolve_paths(data, folder)  # the file's paths; those of overrides stay as given (working directory)
    data = _resolve_named_data(data)  # named data sections first, so that overrides reach into them
    return benchmark_from_dict(apply_overrides(data, overrides or []), str(path), folder)


def benchmark_from_dict(data: dict[str, Any], source: str = "config", folder: Path | None = None) -> BenchmarkConfig:
    """Check a benchmark mapping (see the module docstring); a one-line ConfigError names what is wrong. ``folder``:
    where the file was, against which swept relative paths resolve (the others are resolved by the loader)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a benchmark config must be a mapping (name, seeds, datasets, methods, ...)")
    data = _resolve_named_data(json.loads(json.dumps(data, default=str)))
    schema = validate(BenchmarkSchema, data)
    datasets = {}
    for name, entry in schema.datasets.items():
        metrics = list(schema.metrics if entry.metrics is None else entry.metrics) + list(entry.extra_metrics)
        datasets[name] = DatasetSpec(name, entry.data.model_dump(mode="json"), entry.split, entry.images, metrics,
                                     entry.seeds)  # fmt: skip
    methods: dict[str, MethodSpec] = {}
    for name, method in schema.methods.items():
        for spec in _expand_method(name, data["methods"][name], method):
            methods[spec.name] = spec
    if folder is not None:
        _resolve_swept_paths(methods, folder)
    for spec in methods.values():
        for dataset in spec.datasets or []:
            if dataset not in datasets:
                raise ConfigError(f"methods.{spec.family or spec.name}.datasets: names data set '{dataset}', which is "
                                  f"not defined (defined: {', '.join(datasets)})")  # fmt: skip
    config = BenchmarkConfig(
        name=schema.name or Path(source).stem, seeds=schema.seeds, datasets=datasets, methods=methods,
        batch_size=schema.batch_size, examples=schema.examples, stored_images=schema.stored_images,
        hardware=schema.hardware.model_dump(mode="json"),
    )  # fmt: skip
    variants: dict[str, list[str]] = {}  # a swept method's name -> the names of its variants
    for spec in methods.values():
        if spec.family is not None:
            variants.setdefault(spec.family, []).append(spec.name)
    for spec in methods.values():
        unknown = [name for name in spec.build().depends_on if name not in methods]
        swept = next((name for name in unknown if name in variants), None)
        if swept is not None:
            raise ConfigError(_swept_use(spec, swept, variants[swept]))
        if unknown:
            raise ConfigError(f"methods.{spec.family or spec.name}: uses {', '.join(unknown)}, which is not a method "
                              f"of this benchmark (methods: {', '.join(methods)})")  # fmt: skip
    for dataset in datasets:
        here = {spec.name for spec in config.methods_for(dataset)}
        for spec in config.methods_for(dataset):
            needs = spec.build().depends_on
            if needs and not here.intersection(needs):
                raise ConfigError(
                    f"methods.{spec.family or spec.name}: uses {', '.join(needs)}, none of which runs on data set "
                    f"'{dataset}': list the data sets it runs on (datasets: [...])"
                )
    _check_training(config)
    return config


def _swept_use(spec: MethodSpec, name: str, variants: list[str]) -> str:
    """What to write when ``spec`` uses the swept method ``name`` by its family name."""
    uses = (key for key, value in spec.spec.items() if value == name or (isinstance(value, list) and name in value))
    key = next(uses, "explains")
    method = spec.family or spec.name
    listed = ", ".join(variants)
    sweep = f"add {key}: [{listed}] to its sweep" if spec.family else f"sweep: {{{key}: [{listed}]}}"
    return (f"methods.{method}.{key}: '{name}' is swept, so there is no method '{name}' but {len(variants)} "
            f"({listed}): name one of them ({key}: {variants[-1]}), or sweep methods.{method} over them "
            f"({sweep}) to run it with each")  # fmt: skip


def _check_training(config: BenchmarkConfig) -> None:
    """Check the training experiment of every trained method on every data set (and seed) it runs on: the method's
    ``model`` and ``train`` on top of those of its training ``config``, with the data set's data."""
    bases: dict[str, dict[str, Any]] = {}
    for spec in config.methods.values():
        if not spec.trains:
            continue
        for name, dataset in config.datasets.items():
            if spec.datasets is not None and name not in spec.datasets:
                continue
            where = f"methods.{spec.family or spec.name} on data set '{name}'"
            if dataset.data.get("source") == "photos":
                raise ConfigError(f"{where}: the photos have no training split; give the method a checkpoint or "
                                  f"list the data sets it trains on (datasets: [...])")  # fmt: skip
            template = spec.spec.get("config")
            seeds = [s for s in config.seeds_for(name) if spec.seeds is None or s in spec.seeds]
            for seed in seeds if template and "{seed}" in template else seeds[:1]:
                if template:
                    path = template.format(dataset=name, seed=seed)
                    if path not in bases:
                        try:
                            bases[path] = load_experiment(path).to_dict()
                        except ConfigError as exc:
                            raise ConfigError(f"methods.{spec.family or spec.name}.config: {exc}") from None
                    base = bases[path]
                else:
                    base = {"model": {}, "train": {}}
                experiment = {"name": name, "data": dataset.data,
                              "model": {**base["model"], **(spec.spec.get("model") or {})},
                              "train": merge(base["train"], spec.spec.get("train") or {})}  # fmt: skip
                try:
                    train = experiment_from_dict(experiment, where).train
                    if 0 < train.warmup_epochs == train.epochs:  # the shared warm-up leaves no epoch to the method
                        raise ConfigError(
                            f"train.warmup_epochs: got {train.warmup_epochs}; must be < epochs "
                            f"({train.epochs}) in a benchmark: the method trains after the warm-up"
                        )
                except ConfigError as exc:
                    used = f" (with config {template.format(dataset=name, seed=seed)})" if template else ""
                    raise ConfigError(f"{where}{used}: {exc}") from None
