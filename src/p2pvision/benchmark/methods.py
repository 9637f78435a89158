"""Benchmark methods: small pluggable objects that turn a batch of images into what the metrics need.

A method is a :class:`Method` subclass registered by its ``kind`` with :func:`register_method`. The engine builds
one per cell (data set x method x seed) from its config entry, calls :meth:`Method.load` (load or train networks
for that data set and seed), then :meth:`Method.explain` on every batch, which returns the
:class:`~p2pvision.explanation.Explanation` of the model, explainer or baseline it wraps; faithfulness metrics
query :attr:`Method.classifier`.
Shipped kinds: ``p2p`` (a P2P checkpoint, or trained per data set and seed), ``blackbox`` (a classifier on full
images) and ``explainer`` (a post-hoc explainer of another method's classifier).

To add a baseline::

    @register_method
    class MyBaseline(Method):
        kind = "my_baseline"
        def load(self, context): self.model = ...   # context.train(...) trains on the benchmark's data set;
                                                    # context.methods[name]: a method named in depends_on
        def explain(self, images): return self.model.explain(images)   # an Explanation

``networks()`` defaults to ``[self.model]`` and ``classifier`` to ``self.model``; override them when ``explain``
uses other networks too, or when the classifier metrics should query is another one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.registry import Registry
from p2pvision.train.orchestrate import TrainingRuns

if TYPE_CHECKING:
    from p2pvision.models.backbones import ImageClassifier
    from p2pvision.models.p2p.model import P2PModel

METHODS: Registry[type[Method]] = Registry("benchmark method kind", package="p2pvision.benchmark")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``kind: <cls.kind>`` in benchmark configs."""
    return METHODS.register(cls.kind)(cls)


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

    @property
    def runs(self) -> TrainingRuns:
        """The training runs on this data set with this seed (:class:`~p2pvision.train.orchestrate.TrainingRuns`)."""
        return TrainingRuns(self.dataset, self.data, self.seed, self.models_dir, self.progress)

    def train(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> Path:
        """Train (or reuse, or resume) a model on this data set with this seed; returns its model folder. Runs
        with equal settings share one hash-named folder; the classifier warm-up is shared between the modes in
        :data:`~p2pvision.train.orchestrate.SHARED_WARMUP_MODES` (see :meth:`TrainingRuns.train`)."""
        return self.runs.train(mode, model, train)

    def experiment(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
        """The training experiment of one run on this data set and seed."""
        return self.runs.experiment(mode, model, train)

    def run_folder(self, mode: str, model: dict[str, Any], train: dict[str, Any]) -> Path:
        """The folder of that run, named by a hash of its experiment."""
        return self.runs.run_folder(mode, model, train)

    def train_from(self, mode: str, spec: dict[str, Any]) -> Path:
        """:meth:`train` with the ``model`` and ``train`` sections of a method's spec on top of those of the
        training config it names in ``config`` (a shipped name or a YAML file, may contain ``{dataset}``; its data
        section is not used: training uses the benchmark data set's)."""
        config = spec.get("config")
        return self.runs.train_from(mode, spec, self.path(config) if config else None)

    def path(self, template: str) -> Path:
        """A path (or config name) from a template with ``{dataset}`` and ``{seed}`` fields."""
        return Path(template.format(dataset=self.dataset, seed=self.seed))


class Method(ABC):
    """A way to predict and explain; see the module docstring. ``spec`` is the config entry without the keys the
    engine uses (kind, datasets, sweep); :meth:`__init__` checks it, so config errors show before any work."""

    kind: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    model: nn.Module  # set by load; what networks() and classifier give by default

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
    def explain(self, images: Tensor) -> Explanation:
        """Predict and explain a batch of images (B,3,H,W) in [0,1] on the networks' device."""

    def networks(self) -> list[nn.Module]:
        """The networks :meth:`explain` uses (the engine moves them to the evaluation device): by default the
        ``model`` that :meth:`load` set; methods using other networks override this."""
        return [self.model]

    @property
    def depends_on(self) -> list[str]:
        """Names of other methods whose networks this one uses; the engine loads them first, for the same data set
        and seed, into ``context.methods`` (those that do not run on the data set are skipped)."""
        return []

    @property
    def classifier(self) -> nn.Module:
        """The image classifier behind the method: what faithfulness metrics query and explainers of this method
        explain (by default the ``model`` that :meth:`load` set)."""
        return self.model

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
    default) or a fixed ``tau``; the search is ``model.explain``'s default (``endpoints``) unless ``search`` names
    another (``grid``: the exhaustive reference)."""

    kind = "p2p"
    options = ("checkpoint", "config", "model", "train", "delta", "tau", "search")
    model: P2PModel

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

    def explain(self, images: Tensor) -> Explanation:
        search = {"method": self.spec["search"]} if self.spec.get("search") else {}
        return self.model.explain(images, delta=self.spec.get("delta"), tau=self.spec.get("tau"), **search)

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
    model: ImageClassifier

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

    def explain(self, images: Tensor) -> Explanation:
        return Explanation.of_classifier(self.model, images)


@register_method
class ExplainerMethod(Method):
    """A post-hoc ``explainer`` (see ``p2pvision explain``) of the classifier of the method named in ``explains``
    (a name, or a list: the first one run on the data set), for its top-1 class. ``params`` are the explainer's
    (``removal``, ``partition`` as ``{name: grid, grid: 8}``, ``batch_size``...)."""

    kind = "explainer"
    options: ClassVar[tuple[str, ...]] = ("explainer", "explains", "params")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        from p2pvision.explain import EXPLAINERS

        try:
            EXPLAINERS.resolve(spec.get("explainer"))
        except ConfigError as error:
            raise ConfigError(f"method '{name}': {error}") from None
        if not spec.get("explains"):
            raise ConfigError(f"method '{name}' (explainer): name the method whose classifier it explains (explains)")

    @property
    def depends_on(self) -> list[str]:
        explains = self.spec["explains"]
        return [explains] if isinstance(explains, str) else list(explains)

    def load(self, context: Context) -> None:
        from p2pvision.explain import EXPLAINERS
        from p2pvision.regions import make_partitioner

        base = next((context.methods[name] for name in self.depends_on if name in context.methods), None)
        if base is None:
            raise ConfigError(f"method '{self.name}' explains {self.depends_on}, none of which runs on "
                              f"data set '{context.dataset}'")  # fmt: skip
        self.model = base.classifier
        params = dict(self.spec.get("params") or {})
        explainer = EXPLAINERS.resolve(self.spec["explainer"])
        if "seed" in EXPLAINERS.parameters(explainer):
            params.setdefault("seed", context.seed)  # stochastic explainers draw differently per benchmark seed
        if "partition" in params:
            params["partitioner"] = make_partitioner(**params.pop("partition"))
        self.explainer = EXPLAINERS.create(explainer, self.model, **params)

    def explain(self, images: Tensor) -> Explanation:
        return self.explainer.explain(images)  # the classifier's top-1 class

    @property
    def settings(self) -> dict[str, Any]:
        settings = super().settings
        if hasattr(self, "explainer"):
            settings["resolved"] = self.explainer.params | {"partition": self.explainer.partitioner.params}
        return settings
