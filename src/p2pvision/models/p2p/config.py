"""Every hyperparameter of P2P, with the paper's values as defaults (``../shared/spec/p2p.md``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from p2pvision.errors import ConfigError


def _default_partition() -> dict[str, Any]:
    return {"name": "slic", "n_segments": 100, "compactness": 20.0}


@dataclass
class P2PConfig:
    """Architecture and objective of a P2P model. Serialised to JSON next to every checkpoint.

    Paper defaults: SLIC with 100 segments (compactness 20), a 4-channel per-pixel selector output (1 logit +
    3-d embedding), tau ~ U(0.05, 1) per image in training, grid {0.05, ..., 1.0} and delta = 0.99 at test,
    relaxed-Bernoulli temperature 1.0 -> 0.5 by half of training, lambda1 = 10 with warm-up (0.1 for the first
    10 % of training, linear ramp to 10 by 50 %), lambda2 = 0.01, black fill. Options beyond the paper
    (all off by default): Monte-Carlo samples, straight-through hard masks, a share of hard-mask batches.
    """

    num_classes: int
    class_names: list[str] | None = None
    image_size: int = 224
    # Networks, by timm name. Weights: None (random), "package", a local file, or "hub" (see models.backbones).
    classifier: str = "vit_tiny_patch16_224"
    classifier_weights: str | None = None
    selector_backbone: str = "mobilenetv3_large_100"
    selector_weights: str | None = None
    selector_levels: tuple[int, ...] = (1, 2, 3)  # feature levels (timm forward_intermediates indices) fused
    head_channels: int = 64
    embedding_dim: int = 3
    initial_keep_logit: float = 0.0  # initial bias of the selection logit; > 0 starts by keeping most regions
    # Regions.
    partition: dict[str, Any] = field(default_factory=_default_partition)
    max_regions: int = 100
    # Sparsity control.
    tau_mode: Literal["dynamic", "fixed"] = "dynamic"
    fixed_tau: float = 0.2
    tau_range: tuple[float, float] = (0.05, 1.0)
    tau_grid: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 21))
    delta: float = 0.99
    # Relaxed Bernoulli masks.
    temperature_start: float = 1.0
    temperature_end: float = 0.5
    temperature_anneal: float = 0.5  # fraction of training over which the temperature decays
    mc_samples: int = 1
    straight_through: bool = False
    hard_mask_prob: float = 0.0  # share of training batches that use straight-through hard masks
    # Share of training batches masked exactly as at test time: keep mu > 0, no sampling; gradients flow
    # straight through sigmoid(mu / temperature). Stops the selector from settling on "keep any ~p of the
    # regions at random" (all mu < 0), which sampled masks reward when every region is informative.
    test_mask_prob: float = 0.0
    jitter: float = 1e-4  # variance of the independent part of the region covariance (Sigma = E E^T + jitter I)
    fill: str = "black"
    # Loss.
    sparsity_loss: Literal["log", "l1"] = "log"
    lambda_sparse: float = 10.0
    lambda_sparse_start: float = 0.1
    sparse_warmup: tuple[float, float] = (0.1, 0.5)  # hold start value until, reach full value at (fractions)
    lambda_cov: float = 0.01

    def __post_init__(self) -> None:
        self.selector_levels = tuple(self.selector_levels)
        self.tau_range = tuple(self.tau_range)
        self.tau_grid = tuple(sorted(float(t) for t in self.tau_grid))
        self.sparse_warmup = tuple(self.sparse_warmup)
        checks = [
            (self.num_classes >= 2, f"num_classes={self.num_classes}: need at least 2 classes"),
            (self.tau_mode in ("dynamic", "fixed"), f"tau_mode='{self.tau_mode}': use 'dynamic' or 'fixed'"),
            (0 < self.fixed_tau <= 1, f"fixed_tau={self.fixed_tau}: must lie in (0, 1]"),
            (0 < self.tau_range[0] <= self.tau_range[1] <= 1, f"tau_range={self.tau_range}: need 0 < low <= high <= 1"),
            (bool(self.tau_grid) and 0 < self.tau_grid[0] and self.tau_grid[-1] <= 1, f"tau_grid={self.tau_grid}"),
            (0 < self.delta <= 1, f"delta={self.delta}: must lie in (0, 1]"),
            (self.temperature_start > 0 and self.temperature_end > 0, "temperatures must be > 0"),
            (self.mc_samples >= 1, f"mc_samples={self.mc_samples}: must be >= 1"),
            (0 <= self.hard_mask_prob <= 1, f"hard_mask_prob={self.hard_mask_prob}: must lie in [0, 1]"),
            (0 <= self.test_mask_prob <= 1, f"test_mask_prob={self.test_mask_prob}: must lie in [0, 1]"),
            (self.hard_mask_prob + self.test_mask_prob <= 1, "hard_mask_prob + test_mask_prob must be <= 1"),
            (self.sparsity_loss in ("log", "l1"), f"sparsity_loss='{self.sparsity_loss}': use 'log' or 'l1'"),
            (self.max_regions >= 1, f"max_regions={self.max_regions}: must be >= 1"),
            (self.embedding_dim >= 1, f"embedding_dim={self.embedding_dim}: must be >= 1"),
            (
                self.class_names is None or len(self.class_names) == self.num_classes,
                "class_names must match num_classes",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid P2P setting {message}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> P2PConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown P2P setting(s) {', '.join(unknown)}: known are {', '.join(sorted(known))}")
        return cls(**data)

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
