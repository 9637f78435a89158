"""Benchmark methods: small pluggable objects that turn a batch of images into what the metrics need.

A method is a :class:`Method` subclass registered by its ``kind`` with :func:`register_method`. The engine builds
one per cell (data set x method x seed) from its config entry, calls :meth:`Method.load` (load or train networks
for that data set and seed), then :meth:`Method.predict` on every batch, which returns an
:class:`~p2pvision.metrics.base.EvalInputs` (prediction, classifier, and whatever explanation the method has).
Shipped kinds: ``p2p`` (a P2P checkpoint, or trained per data set and seed), ``blackbox`` (a classifier on full
images) and ``explainer`` (a post-hoc explainer of another method's classifier).

To add a baseline::

    @register_method
    class MyBaseline(Method):
        kind = "my_baseline"
        def load(self, context): self.model = ...   # context.train(...) trains on the benchmark's data set;
                                                    # context.methods[name]: a method named in depends_on
        def predict(self, images): return EvalInputs(images=images, predicted=..., model=..., keep=...)

``networks()`` defaults to ``[self.model]``; override it when ``predict`` uses other networks too.
"""

from __future__ import annotations

import inspect
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor, nn

from p2pvision.cache import params_key
from p2pvision.errors import ConfigError
from p2pvision.metrics.base import EvalInputs

METHODS: dict[str, type[Method]] = {}
# Training modes whose first epochs are the classifier alone on full images: they share one warm-up run.
SHARED_WARMUP_MODES = ("p2p", "blackbox_pixel", "soft_mask")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``kind: <cls.kind>`` in benchmark configs."""
    METHODS[cls.kind] = cls
    return cls


@dataclass
class Context:
    """Where a method is loaded: the data set (its name, ``data`` section and classes), the seed, the folder for
    trained models, and ``methods``: the other methods loaded for the same data set and seed, by name."""

    dataset: str
    data: dict[str, Any]
    classes: list[str] | None
    seed: int
    models_dir: Path
    methods: dict[str, Method] = field(default_factory=dict)
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
            return self._train_once(mode, model, train)
        lr = train.get("warmup_lr") or train["lr"]
        classifier = {key: model[key] for key in ("classifier", "classifier_weights") if model.get(key)}
        warm_train = {**train, "lr": lr, "warmup_epochs": 0, "warmup_lr": None}
        warm = self._train_once("classifier", classifier, {**warm_train, "epochs": warmup})
        if mode == "classifier":
            return self._train_once(mode, classifier, warm_train, continues=warm.parent)
        rest = {**train, "epochs": int(train["epochs"]) - warmup, "warmup_epochs": 0, "warmup_lr": None}
        return self._train_once(mode, {**model, "classifier_weights": str(warm / "model.safetensors")}, rest)

    def _train_once(
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
        if rank_zero_only.rank > 0:  # other processes of a distributed evaluation wait for the first to train
            return wait_for(folder / "model" / "config.json").parent
        if not (folder / "model" / "config.json").is_file():
            resume = (folder / "checkpoints" / "last.ckpt").is_file()
            print(f"training {mode} on '{self.dataset}' with seed {self.seed} into {folder}", flush=True)
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

    def train_from(self, mode: str, spec: dict[str, Any]) -> Path:
        """:meth:`train` with the ``model`` and ``train`` sections of a method's spec on top of those of the
        training config it names in ``config`` (a shipped name or a YAML file, may contain ``{dataset}``; its data
        section is not used: training uses the benchmark data set's)."""
        from p2pvision.train.experiment import load_experiment

        config = spec.get("config")
        base = load_experiment(str(self.path(config))).to_dict() if config else {"model": {}, "train": {}}
        model = {**base["model"], **(spec.get("model") or {})}
        train = {**base["train"], **(spec.get("train") or {})}
        return self.train(mode, model, train)

    def path(self, template: str) -> Path:
        """A path (or config name) from a template with ``{dataset}`` and ``{seed}`` fields."""
        return Path(template.format(dataset=self.dataset, seed=self.seed))


def wait_for(path: Path, timeout: float = 7 * 24 * 3600.0) -> Path:
    """Wait until ``path`` exists (written atomically by another process); returns it."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"'{path}' did not appear within {timeout:.0f} s")
        time.sleep(2.0)
    return path


class Method(ABC):
    """A way to predict and explain; see the module docstring. ``spec`` is the config entry without the keys the
    engine uses (kind, datasets, sweep); :meth:`__init__` checks it, so config errors show before any work."""

    kind: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        unknown = sorted(set(spec) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ConfigError(f"method '{name}' ({self.kind}): unknown setting(s) {', '.join(unknown)}; known: {known}")
        self.name, self.spec = name, dict(spec)

    @abstractmethod
    def load(self, context: Context) -> None:
        """Load or train the networks for ``context.dataset`` and ``context.seed``."""

    @abstractmethod
    def predict(self, images: Tensor) -> EvalInputs:
        """Predict (and explain) a batch of images (B,3,H,W) in [0,1] on the networks' device."""

    def networks(self) -> list[nn.Module]:
        """The networks :meth:`predict` uses (the engine moves them to the evaluation device): by default the
        ``model`` that :meth:`load` set; methods using other networks override this."""
        return [self.model]

    @property
    def depends_on(self) -> list[str]:
        """Names of other methods whose networks this one uses; the engine loads them first, for the same data set
        and seed, into ``context.methods`` (those that do not run on the data set are skipped)."""
        return []

    @property
    def classifier(self) -> nn.Module:
        """The image classifier behind the method (what explainers of this method explain)."""
        raise ConfigError(f"method '{self.name}' ({self.kind}) has no classifier to explain")

    @property
    def settings(self) -> dict[str, Any]:
        """JSON-serialisable description, reported with every score."""
        return {"kind": self.kind, **self.spec}


def _check_classes(name: str, found: int, context: Context) -> None:
    if context.classes is not None and found != len(context.classes):
        raise ConfigError(
            f"method '{name}' has {found} classes but data set '{context.dataset}' has {len(context.classes)}"
        )


@register_method
class P2PMethod(Method):
    """P2P from ``checkpoint`` (may contain ``{dataset}``, ``{seed}``), or trained per data set and seed on the
    benchmark's data: the model and train sections of the training ``config`` (e.g. ``semisynthetic_object``)
    updated with ``model`` and ``train``. Predicts with the tau search at certainty ``delta`` (the model's own by
    default) or a fixed ``tau``."""

    kind = "p2p"
    options = ("checkpoint", "config", "model", "train", "delta", "tau", "search")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        trains = any(key in spec for key in ("config", "model", "train"))
        if ("checkpoint" in spec) == trains:
            raise ConfigError(f"method '{name}' (p2p): give either a checkpoint or training settings (config, "
                              "model, train)")  # fmt: skip

    def load(self, context: Context) -> None:
        from p2pvision.models.p2p.checkpoint import load_p2p

        if "checkpoint" in self.spec:
            folder = context.path(self.spec["checkpoint"])
        else:
            folder = context.train_from("p2p", self.spec)
        self.model = load_p2p(folder).eval()
        _check_classes(self.name, self.model.config.num_classes, context)

    def predict(self, images: Tensor) -> EvalInputs:
        from p2pvision.metrics.p2p_evaluation import p2p_inputs

        result = self.model.explain(images, delta=self.spec.get("delta"), tau=self.spec.get("tau"),
                                    method=self.spec.get("search", "grid"))  # fmt: skip
        return p2p_inputs(self.model, images, result)

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier


@register_method
class BlackboxMethod(Method):
    """A classifier on full images: timm ``classifier`` with ``weights`` (None, "package", a file, "hub"), a
    ``checkpoint`` folder written by training in classifier mode, or trained per data set and seed with the
    settings of a training ``config`` updated with ``train`` (and ``classifier``, if given)."""

    kind = "blackbox"
    options = ("classifier", "weights", "checkpoint", "config", "train")

    def load(self, context: Context) -> None:
        from p2pvision.models.backbones import create_classifier, load_classifier

        name = self.spec.get("classifier")
        if "train" in self.spec or "config" in self.spec:
            model = {"classifier": name} if name else {}
            spec = {**self.spec, "model": model}
            self.model = load_classifier(context.train_from("classifier", spec))
        elif "checkpoint" in self.spec:
            self.model = load_classifier(context.path(self.spec["checkpoint"]))
        elif name is None:
            raise ConfigError(f"method '{self.name}' (blackbox): give classifier, checkpoint or train")
        else:
            self.model = create_classifier(name, weights=self.spec.get("weights"))
        self.model.eval()
        _check_classes(self.name, self.model.num_classes, context)

    def predict(self, images: Tensor) -> EvalInputs:
        predicted = self.model(images).argmax(1)
        return EvalInputs(images=images, predicted=predicted, model=self.model, evaluations=torch.ones_like(predicted))

    @property
    def classifier(self) -> nn.Module:
        return self.model


@register_method
class ExplainerMethod(Method):
    """A post-hoc ``explainer`` (see ``p2pvision explain``) of the classifier of the method named in ``explains``
    (a name, or a list: the first one run on the data set), for its top-1 class. ``params`` are the explainer's
    (``removal``, ``partition`` as ``{name: grid, grid: 8}``, ``batch_size``...)."""

    kind = "explainer"
    options = ("explainer", "explains", "params")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        from p2pvision.explain.registry import ALIASES, EXPLAINERS, explainer_names

        if ALIASES.get(spec.get("explainer"), spec.get("explainer")) not in EXPLAINERS:
            raise ConfigError(f"method '{name}': explainer must be one of {', '.join(explainer_names())}")
        if not spec.get("explains"):
            raise ConfigError(f"method '{name}' (explainer): name the method whose classifier it explains (explains)")

    @property
    def depends_on(self) -> list[str]:
        explains = self.spec["explains"]
        return [explains] if isinstance(explains, str) else list(explains)

    def load(self, context: Context) -> None:
        from p2pvision.explain.registry import ALIASES, EXPLAINERS, make_explainer
        from p2pvision.regions import make_partitioner

        base = next((context.methods[name] for name in self.depends_on if name in context.methods), None)
        if base is None:
            raise ConfigError(f"method '{self.name}' explains {self.depends_on}, none of which runs on "
                              f"data set '{context.dataset}'")  # fmt: skip
        self.model = base.classifier
        params = dict(self.spec.get("params") or {})
        explainer = ALIASES.get(self.spec["explainer"], self.spec["explainer"])
        if "seed" in inspect.signature(EXPLAINERS[explainer]).parameters:
            params.setdefault("seed", context.seed)  # stochastic explainers draw differently per benchmark seed
        if "partition" in params:
            params["partitioner"] = make_partitioner(**params.pop("partition"))
        self.explainer = make_explainer(explainer, self.model, **params)

    def predict(self, images: Tensor) -> EvalInputs:
        predicted = self.model(images).argmax(1)
        result = self.explainer.explain(images, target=predicted)
        evaluations = torch.full_like(predicted, 1) + result.cost.evaluations / len(images)  # + the top-1 pass
        return EvalInputs(images=images, predicted=predicted, model=self.model, pixel_map=result.pixel_map,
                          regions=result.regions, scores=result.scores, evaluations=evaluations)  # fmt: skip

    @property
    def classifier(self) -> nn.Module:
        return self.model

    @property
    def settings(self) -> dict[str, Any]:
        settings = super().settings
        if hasattr(self, "explainer"):
            settings["resolved"] = self.explainer.params | {"partition": self.explainer.partitioner.params}
        return settings


# The baselines of the P2P comparison (p2pvision.baselines) register their kinds: blackbox_pixel, realx, soft_mask,
# posthoc_selection.
import p2pvision.baselines.benchmark  # noqa: E402, F401
