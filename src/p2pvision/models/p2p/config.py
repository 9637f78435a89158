"""Every hyperparameter of P2P, with the paper's values as defaults (``../shared/spec/p2p.md``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from p2pvision.config import (
    Float,
    Fraction,
    Int,
    Name,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Probability,
    Section,
    check_call,
    error_at,
    is_partial,
    schema_from_dataclass,
    validate,
)
from p2pvision.errors import ConfigError


def _default_partition() -> dict[str, Any]:
    return {"name": "slic", "n_segments": 100, "compactness": 20.0}


def check_partition(value: dict[str, Any]) -> dict[str, Any]:
    """A partition setting (``{name: slic, n_segments: 100, ...}``): a known partitioner and parameters it takes."""
    from p2pvision.regions.partition import make_partitioner, partitioner_names

    names = partitioner_names()
    if "name" not in value:
        raise error_at("name", None, f"missing; allowed: {', '.join(names)}")
    if not isinstance(value["name"], str) or value["name"] not in names:
        raise error_at("name", value["name"], f"allowed: {', '.join(names)}")
    params = {key: item for key, item in value.items() if key != "name"}
    check_call(type(make_partitioner(value["name"])), params)
    return value


def check_fill(value: str) -> str:
    """A removal name that P2P can fill removed regions with (``make_removal(value)`` works)."""
    from p2pvision.removal import make_removal, removal_names

    if value not in removal_names():
        raise error_at((), value, f"allowed: {', '.join(removal_names())}")
    try:
        make_removal(value)
    except ConfigError as exc:
        raise error_at((), value, str(exc)) from None
    return value


Partition = Annotated[dict[str, Any], AfterValidator(check_partition)]
Fill = Annotated[Name, AfterValidator(check_fill)]
TauGrid = Annotated[tuple[Fraction, ...], Field(min_length=1), AfterValidator(lambda grid: tuple(sorted(grid)))]


@dataclass
class P2PConfig:
    """Architecture and objective of a P2P model. Serialised to JSON next to every checkpoint.

    Paper defaults: SLIC with 100 segments (compactness 20), a 4-channel per-pixel selector output (1 logit +
    3-d embedding), tau ~ U(0.05, 1) per image in training, grid {0.05, ..., 1.0} and delta = 0.99 at test,
    relaxed-Bernoulli temperature 1.0 -> 0.5 by half of training, lambda1 = 10 with warm-up (0.1 for the first
    10 % of training, linear ramp to 10 by 50 %), lambda2 = 0.01, black fill. Options beyond the paper
    (all off by default): Monte-Carlo samples, straight-through hard masks, a share of hard-mask batches.

    Every field's type carries its range; construction validates them (:mod:`p2pvision.config`) and raises a
    one-line ConfigError naming the setting (``model.fixed_tau: got 2; must be a number in (0, 1]``).
    """

    num_classes: Annotated[Int, Field(ge=2)]
    class_names: list[str] | None = None
    image_size: Annotated[Int, Field(ge=8)] = 224
    # Networks, by timm name. Weights: None (random), "package", a local file, or "hub" (see models.backbones).
    classifier: Name = "vit_tiny_patch16_224"
    classifier_weights: Name | None = None
    selector_backbone: Name = "mobilenetv3_large_100"
    selector_weights: Name | None = None
    # feature levels (timm forward_intermediates indices) fused
    selector_levels: Annotated[tuple[NonNegativeInt, ...], Field(min_length=1)] = (1, 2, 3)
    head_channels: PositiveInt = 64
    embedding_dim: PositiveInt = 3
    initial_keep_logit: Float = 0.0  # initial bias of the selection logit; > 0 starts by keeping most regions
    # Regions.
    partition: Partition = field(default_factory=_default_partition)
    max_regions: PositiveInt = 100
    # The hard (test-time) mask keeps at least this many regions, the highest mu, when fewer have mu > 0: an empty
    # input explains nothing and its prediction is the classifier's bias (0: allow empty masks, as the authors' code).
    min_kept_regions: NonNegativeInt = 1
    # Sparsity control.
    tau_mode: Literal["dynamic", "fixed"] = "dynamic"
    fixed_tau: Fraction = 0.2
    tau_range: tuple[Fraction, Fraction] = (0.05, 1.0)
    tau_grid: TauGrid = tuple(round(0.05 * i, 2) for i in range(1, 21))
    delta: OpenFraction = 0.99  # certainty: the top class probability the tau search asks for
    # How tau enters the selector head: "film" (this project: a tau channel in both head convolutions and FiLM between
    # them, so tau can re-rank regions) or "additive" (the authors' code: tau only as an input of the last 1x1
    # convolution, which adds the same constant to every region logit: one threshold slid over a fixed ranking).
    tau_conditioning: Literal["film", "additive"] = "film"
    # Relaxed Bernoulli masks.
    temperature_start: PositiveFloat = 1.0
    temperature_end: PositiveFloat = 0.5
    temperature_anneal: Probability = 0.5  # fraction of training over which the temperature decays
    mc_samples: PositiveInt = 1
    straight_through: bool = False
    hard_mask_prob: Probability = 0.0  # share of training batches that use straight-through hard masks
    # Share of training batches masked exactly as at test time: keep mu > 0, no sampling; gradients flow
    # straight through sigmoid(mu / temperature). Stops the selector from settling on "keep any ~p of the
    # regions at random" (all mu < 0), which sampled masks reward when every region is informative.
    test_mask_prob: Probability = 0.0
    jitter: PositiveFloat = 1e-4  # variance of the independent part of the region covariance (E E^T + jitter I)
    fill: Fill = "black"
    # Loss.
    sparsity_loss: Literal["log", "l1"] = "log"
    lambda_sparse: NonNegativeFloat = 10.0
    lambda_sparse_start: NonNegativeFloat = 0.1
    sparse_warmup: tuple[Probability, Probability] = (0.1, 0.5)  # hold start value until, full value at (fractions)
    lambda_cov: NonNegativeFloat = 0.01

    def __post_init__(self) -> None:
        values = {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}
        checked = validate(P2P_SCHEMA, values, prefix="model")
        for name in values:
            object.__setattr__(self, name, getattr(checked, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> P2PConfig:
        """From a dict such as :meth:`to_dict` writes; unknown or invalid settings raise a one-line ConfigError."""
        if set(data) - set(P2P_SCHEMA.model_fields) or "num_classes" not in data:
            validate(P2P_SCHEMA, data, prefix="model")  # names the unknown or missing key
        return cls(**data)  # checks every value

    def sparsity_weight(self, progress: float) -> float:
        """lambda1 at ``progress`` in [0, 1] of training: start value, then a linear ramp, then full."""
        hold, full = self.sparse_warmup
        if progress <= hold:
            return self.lambda_sparse_start
        if progress >= full:
            return self.lambda_sparse
        share = (progress - hold) / (full - hold)
        return self.lambda_sparse_start + share * (self.lambda_sparse - self.lambda_sparse_start)

    def temperature(self, progress: float) -> float:
        """Relaxed-Bernoulli temperature: exponential decay from start to end over ``temperature_anneal``."""
        if self.temperature_anneal <= 0 or progress >= self.temperature_anneal:
            return self.temperature_end
        ratio = self.temperature_end / self.temperature_start
        return self.temperature_start * ratio ** (progress / self.temperature_anneal)


class _P2PChecks(Section):
    """The checks that relate P2P settings (a section's missing keys take the defaults)."""

    @model_validator(mode="after")
    def _related(self, info: ValidationInfo) -> _P2PChecks:
        low, high = self.tau_range  # type: ignore[attr-defined]
        if low > high:
            raise error_at("tau_range", [low, high], "the low end must be <= the high end")
        hold, full = self.sparse_warmup  # type: ignore[attr-defined]
        if hold > full:
            raise error_at("sparse_warmup", [hold, full], "the hold fraction must be <= the full-weight fraction")
        hard, test = self.hard_mask_prob, self.test_mask_prob  # type: ignore[attr-defined]
        if hard + test > 1 and not is_partial(info):
            raise error_at("test_mask_prob", test, f"hard_mask_prob + test_mask_prob must be <= 1 (hard_mask_prob "
                                                   f"is {hard})")  # fmt: skip
        names = getattr(self, "class_names", None)
        if names is not None and len(names) != self.num_classes:  # type: ignore[attr-defined]
            raise error_at("class_names", names, f"must name num_classes ({self.num_classes}) classes")  # type: ignore[attr-defined]
        return self


# The schema of P2PConfig, and that of the ``model`` section of an experiment (the class count, names and image
# size come from the data there).
P2P_SCHEMA = schema_from_dataclass(P2PConfig, "P2PSettings", base=_P2PChecks)
MODEL_SECTION = schema_from_dataclass(
    P2PConfig, "model", exclude=("num_classes", "class_names", "image_size"), base=_P2PChecks
)
