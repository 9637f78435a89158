"""The baselines of :mod:`p2pvision.baselines` as benchmark methods (``p2pvision benchmark``): kinds
``blackbox_pixel``, ``realx``, ``soft_mask`` (trained per data set and seed like ``p2p``, or loaded from a
``checkpoint``) and ``posthoc_selection`` (a post-hoc
explainer's top regions at a fixed kept ``fraction`` or at the per-image kept fraction of the P2P method named in
``match``). Fixed-tau and pixel-level P2P are ``kind: p2p`` entries with other ``model`` settings."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from p2pvision.baselines.checkpoint import Baseline, load_baseline
from p2pvision.baselines.posthoc import top_regions_mask
from p2pvision.benchmark.methods import Context, ExplainerMethod, Method, _check_classes, register_method
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.metrics.base import check_fraction


class TrainedBaseline(Method):
    """A baseline of :mod:`p2pvision.baselines` from ``checkpoint`` (may contain ``{dataset}``, ``{seed}``), or
    trained in ``train.mode = kind`` with the model and train sections of the training ``config`` updated with
    ``model`` and ``train``; ``fraction`` is a shorthand for ``model.fixed_tau`` (the kept-fraction budget)."""

    options = ("checkpoint", "config", "model", "train", "fraction")
    kind: ClassVar[str]
    model: Baseline

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        trains = any(key in spec for key in ("config", "model", "train", "fraction"))
        if ("checkpoint" in spec) == trains:
            raise ConfigError(f"method '{name}' ({self.kind}): give either a checkpoint or training settings "
                              "(config, model, train, fraction)")  # fmt: skip
        if "fraction" in spec:
            check_fraction(f"method '{name}': fraction", spec["fraction"])

    def load(self, context: Context) -> None:
        if "checkpoint" in self.spec:
            folder = context.path(self.spec["checkpoint"])
        else:
            spec = dict(self.spec)
            if "fraction" in spec:
                spec["model"] = {**(spec.get("model") or {}), "fixed_tau": spec.pop("fraction")}
            folder = context.train_from(self.kind, spec)
        self.model = load_baseline(folder)
        if self.model.kind != self.kind:
            raise ConfigError(f"method '{self.name}' ({self.kind}): checkpoint '{folder}' holds a {self.model.kind}")
        _check_classes(self.name, self.model.config.num_classes, context)

    def explain(self, images: Tensor) -> Explanation:
        return self.model.explain(images)

    @property
    def classifier(self) -> nn.Module:
        return self.model.classifier


@register_method
class BlackboxPixelMethod(TrainedBaseline):
    """Blackbox-Pixel: the classifier trained and evaluated on a fixed, evenly spaced pixel mask."""

    kind = "blackbox_pixel"


@register_method
class RealXMethod(TrainedBaseline):
    """REAL-X: amortised region selector; the separately trained evaluator predicts from the kept regions."""

    kind = "realx"


@register_method
class SoftMaskMethod(TrainedBaseline):
    """Soft-mask selector (COMET-like); ``keep`` is the continuous mask, so ``leakage`` uses ``1 - m``."""

    kind = "soft_mask"


@register_method
class PosthocSelectionMethod(ExplainerMethod):
    """A post-hoc explainer of another method's classifier (see ``explainer``) whose top regions are kept: as many
    as bring the kept area closest to ``fraction``, or, per image, to the kept fraction of the P2P (or any
    keep-mask) method named in ``match``. The prediction is the explained classifier's on the full image; the
    matched method's cost is not counted."""

    kind = "posthoc_selection"
    options = (*ExplainerMethod.options, "fraction", "match")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        super().__init__(name, spec)
        if ("fraction" in spec) == ("match" in spec):
            raise ConfigError(f"method '{name}' (posthoc_selection): give either fraction or match (a P2P method)")
        if "fraction" in spec:
            check_fraction(f"method '{name}': fraction", spec["fraction"])

    @property
    def depends_on(self) -> list[str]:
        return super().depends_on + ([self.spec["match"]] if "match" in self.spec else [])

    def load(self, context: Context) -> None:
        super().load(context)
        self.matched: Method | None = None
        if "match" in self.spec:
            self.matched = context.methods.get(self.spec["match"])
            if self.matched is None:
                raise ConfigError(f"method '{self.name}' matches '{self.spec['match']}', which does not run on "
                                  f"data set '{context.dataset}'")  # fmt: skip

    def explain(self, images: Tensor) -> Explanation:
        explanation = super().explain(images)
        if self.matched is None:
            fraction: float | Tensor = float(self.spec["fraction"])
        else:
            matched = self.matched.explain(images).kept_fraction
            if matched is None:
                raise ConfigError(f"method '{self.name}' matches '{self.spec['match']}', which keeps no mask")
            fraction = matched
        if explanation.scores is None or explanation.regions is None:
            raise ConfigError(f"method '{self.name}': explainer '{self.spec['explainer']}' scores no regions to keep")
        explanation.keep = top_regions_mask(explanation.scores, explanation.regions, fraction)
        return explanation

    def networks(self) -> list[nn.Module]:
        return super().networks() + (self.matched.networks() if self.matched is not None else [])
