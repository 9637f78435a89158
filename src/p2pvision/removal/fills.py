"""Fills that do not depend on the hole: constant colours, the per-region mean, Gaussian blur and noise.

All are differentiable with respect to the images (the constants trivially), so soft masks train through them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from p2pvision.classifier import normalisation_mean
from p2pvision.errors import ConfigError
from p2pvision.regions.ops import region_mean, region_to_pixel
from p2pvision.removal.base import REMOVALS, Removal

IMAGENET_MEAN = (0.485, 0.456, 0.406)


def _colour(name: str, value: float | Sequence[float]) -> tuple[float, float, float]:
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ConfigError(f"{name} must be one number or three numbers in [0, 1], got {value!r}")
    return values[0], values[1], values[2]


@REMOVALS.register()
class ConstantFill(Removal):
    """Fill with one colour (RGB in [0, 1])."""

    name = "constant"

    def __init__(self, colour: float | Sequence[float] = 0.0) -> None:
        self.colour = _colour("colour", colour)

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        colour = torch.tensor(self.colour, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return colour.expand_as(images)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "colour": list(self.colour)}


@REMOVALS.register()
class BlackFill(ConstantFill):
    """Fill with black (0 before normalisation), as P2P does."""

    name = "black"

    def __init__(self) -> None:
        super().__init__(0.0)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name}


@REMOVALS.register()
class GreyFill(ConstantFill):
    """Fill with mid grey (0.5)."""

    name = "grey"

    def __init__(self) -> None:
        super().__init__(0.5)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name}


@REMOVALS.register()
class MeanColourFill(ConstantFill):
    """Fill with the data set's mean colour, which is zero after the model's normalisation.

    Pass the model's ``mean`` (``MeanColourFill.for_model(classifier)``); the default is ImageNet's. ``mean=None``
    fills each image with its own mean colour: what :meth:`for_model` gives for a network whose normalisation is
    unknown (a plain torchvision model given without mean/std), where no colour is known to be neutral.
    """

    name = "mean"

    def __init__(self, mean: float | Sequence[float] | None = IMAGENET_MEAN) -> None:
        self.per_image = mean is None
        super().__init__(0.0 if mean is None else mean)

    @classmethod
    def for_model(cls, model: nn.Module) -> MeanColourFill:
        """The fill that is zero in ``model``'s normalised input space: its normalisation mean where known (an
        :class:`~p2pvision.models.backbones.ImageClassifier`, a network wrapped with its mean/std), else each
        image's own mean colour."""
        mean = normalisation_mean(model)
        return cls(None if mean is None else mean.tolist())

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        if self.per_image:
            return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
        return super().fill(images, keep, regions)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "mean": "per image" if self.per_image else list(self.colour)}


class BaselineFill(Removal):
    """Fill with a given baseline, as Captum's ``baselines``: a number (grey level), an RGB colour (3,), an image
    (3,H,W) or one image per explained image (B,3,H,W), in image space ([0, 1], before any normalisation).

    With one baseline per image, ``fill`` must see all B images at once (the region game does: it computes
    hole-independent fills once per batch).
    """

    name = "baseline"

    def __init__(self, baseline: float | Sequence[float] | Tensor) -> None:
        tensor = torch.as_tensor(baseline, dtype=torch.float32).detach()
        if tensor.ndim == 1 and tensor.numel() == 3:
            tensor = tensor.view(3, 1, 1)
        if not (tensor.ndim == 0 or (tensor.ndim in (3, 4) and tensor.shape[-3] == 3)):
            raise ConfigError(f"baselines must be a number, 3 RGB values, an image (3,H,W) or images (B,3,H,W), got "
                              f"shape {tuple(tensor.shape)}")  # fmt: skip
        low, high = (float(value) for value in tensor.aminmax())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ConfigError(f"baselines must be in [0, 1] like the images (before normalisation), got values in "
                              f"[{low:.3g}, {high:.3g}]")  # fmt: skip
        self.baseline = tensor

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        baseline = self.baseline.to(images)
        if baseline.ndim == 4 and baseline.shape[0] not in (1, images.shape[0]):
            raise ValueError(f"baselines hold {baseline.shape[0]} images, but {images.shape[0]} are filled")
        try:
            return baseline.expand_as(images)
        except RuntimeError:
            raise ValueError(f"baselines of shape {tuple(self.baseline.shape)} do not fit images of shape "
                             f"{tuple(images.shape)}") from None  # fmt: skip

    @property
    def params(self) -> dict[str, Any]:
        shape = list(self.baseline.shape)
        if self.baseline.numel() <= 3:
            return {"name": self.name, "baseline": self.baseline.flatten().tolist()}
        return {"name": self.name, "baseline": f"tensor {shape}"}


@REMOVALS.register()
class RegionMeanFill(Removal):
    """Fill every removed pixel with the mean colour of its own region (needs the region map)."""

    name = "region_mean"
    needs_regions = True

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        if regions is None:
            raise ConfigError("the region-mean fill needs the region label maps (regions=...)")
        num = int(regions.max()) + 1 if regions.numel() else 1
        means = region_mean(images, regions, num)  # (N, K, 3)
        return region_to_pixel(means, regions, region_dim=1)


def gaussian_kernel(sigma: float, truncate: float = 3.0) -> Tensor:
    """Normalised 1-d Gaussian kernel of radius ``ceil(truncate * sigma)``."""
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N,C,H,W) images with edge-replicating padding (any kernel size)."""
    kernel = gaussian_kernel(sigma).to(images)
    radius = kernel.numel() // 2
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


@REMOVALS.register()
class BlurFill(Removal):
    """Fill with a Gaussian-blurred copy of the image (``sigma`` in pixels; MP uses 10).

    Blur leaks the low frequencies of the removed content: it is a perturbation rather than a removal.
    """

    name = "blur"

    def __init__(self, sigma: float = 10.0) -> None:
        if not sigma > 0:
            raise ConfigError(f"blur sigma must be > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        return gaussian_blur(images, self.sigma)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "sigma": self.sigma}


@REMOVALS.register()
class NoiseFill(Removal):
    """Fill with uniform noise in [0, 1]; one fixed pattern per ``seed`` and image size, shared by all images."""

    name = "noise"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.rand((1, *images.shape[1:]), generator=generator, dtype=torch.float32)
        return noise.to(images).expand_as(images)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed}
