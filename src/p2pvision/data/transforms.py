"""Joint augmentations of an image, its region label map and its object mask.

A *sample* is a dict with ``"image"`` (3, H, W) float in [0, 1], optionally masks (H, W) bool under
``"mask"`` or any key ending in ``"_mask"`` (e.g. ``"object_mask"``), and ``"regions"`` (H, W) int64; other
keys pass through unchanged. Geometric transforms move image, masks and regions the same way, so regions
computed once on the full image stay valid for every augmented view and need not be recomputed each epoch.
The image is resampled bilinearly with antialiasing; masks and regions with nearest-exact sampling, which
uses the same pixel-centre convention as bilinear (plain "nearest" is off by half a pixel). After a crop or
resize, region labels are renumbered 0..K'-1 (regions that vanished are gone).

Randomness comes from torch's RNG, so a DataLoader seeds each worker differently; a ``generator`` can be
given for reproducible single-process use (a generator is copied into every worker, which would repeat the
same augmentations across workers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from p2pvision.errors import ConfigError
from p2pvision.regions.ops import relabel_contiguous

__all__ = [
    "ColorJitter",
    "JointCenterCrop",
    "JointCompose",
    "JointRandomHorizontalFlip",
    "JointRandomResizedCrop",
    "JointResize",
]

Sample = dict[str, Any]


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ConfigError(f"size must be a positive integer or (height, width), got {size!r}")
    return pair[0], pair[1]


def _mask_keys(sample: Mapping[str, Any]) -> list[str]:
    """Keys of the sample that hold pixel masks: ``mask`` and every ``*_mask``."""
    return [key for key in sample if (key == "mask" or key.endswith("_mask")) and sample[key] is not None]


def _check_sample(sample: Mapping[str, Any]) -> tuple[int, int]:
    """Check the shapes and dtypes of a sample; returns the image's (H, W)."""
    image = sample.get("image")
    if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3 or not image.dtype.is_floating_point:
        described = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"sample['image'] must be a float tensor (3, H, W), got {described}")
    size = tuple(image.shape[1:])
    for key, dtype in [(key, torch.bool) for key in _mask_keys(sample)] + [("regions", torch.int64)]:
        value = sample.get(key)
        if value is not None and (not isinstance(value, Tensor) or value.dtype != dtype or tuple(value.shape) != size):
            described = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"sample[{key!r}] must be a {dtype} tensor of shape {size}, got {described}")
    return size[0], size[1]


def _apply_geometric(
    sample: Mapping[str, Any], op: Callable[[Tensor, InterpolationMode], Tensor], relabel: bool = True
) -> Sample:
    """Apply ``op(tensor, interpolation)`` to image (bilinear) and to mask and regions (nearest-exact)."""
    _check_sample(sample)
    out = dict(sample)
    out["image"] = op(sample["image"], InterpolationMode.BILINEAR)
    for key in _mask_keys(sample):
        out[key] = op(sample[key].unsqueeze(0), InterpolationMode.NEAREST_EXACT).squeeze(0)
    if sample.get("regions") is not None:
        regions = op(sample["regions"].unsqueeze(0), InterpolationMode.NEAREST_EXACT).squeeze(0)
        out["regions"] = relabel_contiguous(regions) if relabel else regions
    return out


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


class JointCompose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        out = dict(sample)
        for transform in self.transforms:
            out = transform(out)
        return out

    def __repr__(self) -> str:
        return f"JointCompose({self.transforms!r})"


class JointResize:
    """Resize to ``size``: an int matches the shorter side (keeping the aspect ratio), (h, w) is exact."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = [_size_pair(size)[0]] if isinstance(size, int) else list(_size_pair(size))

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        return _apply_geometric(sample, lambda x, mode: F.resize(x, self.size, interpolation=mode, antialias=True))

    def __repr__(self) -> str:
        return f"JointResize(size={self.size})"


class JointCenterCrop:
    """Crop the centre ``size`` (int or (h, w)); the crop must fit inside the image."""

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_pair(size)

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        height, width = _check_sample(sample)
        if self.size[0] > height or self.size[1] > width:
            raise ValueError(f"center crop {self.size} is larger than the image ({height}, {width}); resize first")
        return _apply_geometric(sample, lambda x, mode: F.center_crop(x, list(self.size)))

    def __repr__(self) -> str:
        return f"JointCenterCrop(size={self.size})"


class JointRandomResizedCrop:
    """Crop a random area fraction ``scale`` with aspect ratio in ``ratio``, then resize to ``size``.

    The crop box is drawn as torchvision's ``RandomResizedCrop`` draws it (10 tries, then a centre crop);
    the drawing is written out here because torchvision's version cannot take a ``generator``.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        generator: torch.Generator | None = None,
    ) -> None:
        self.size = _size_pair(size)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"scale must satisfy 0 < min <= max <= 1, got {scale!r}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"ratio must satisfy 0 < min <= max, got {ratio!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.generator = generator

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Draw a crop box (top, left, box_height, box_width) inside a height x width image."""
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = height * width * _uniform(*self.scale, self.generator)
            aspect = math.exp(_uniform(*log_ratio, self.generator))
            box_width = round(math.sqrt(target_area * aspect))
            box_height = round(math.sqrt(target_area / aspect))
            if 0 < box_width <= width and 0 < box_height <= height:
                top = int(torch.randint(0, height - box_height + 1, (), generator=self.generator))
                left = int(torch.randint(0, width - box_width + 1, (), generator=self.generator))
                return top, left, box_height, box_width
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            box_width, box_height = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            box_width, box_height = round(height * self.ratio[1]), height
        else:
            box_width, box_height = width, height
        return (height - box_height) // 2, (width - box_width) // 2, box_height, box_width

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        top, left, box_height, box_width = self.crop_box(*_check_sample(sample))
        return _apply_geometric(
            sample,
            lambda x, mode: F.resized_crop(
                x, top, left, box_height, box_width, list(self.size), interpolation=mode, antialias=True
            ),
        )

    def __repr__(self) -> str:
        return f"JointRandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


class JointRandomHorizontalFlip:
    """Mirror image, mask and regions left-right with probability ``p`` (labels stay as they are)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        if not 0 <= p <= 1:
            raise ConfigError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = generator

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        if torch.rand((), generator=self.generator).item() >= self.p:
            _check_sample(sample)
            return dict(sample)
        return _apply_geometric(sample, lambda x, mode: F.horizontal_flip(x), relabel=False)

    def __repr__(self) -> str:
        return f"JointRandomHorizontalFlip(p={self.p})"


class ColorJitter:
    """Randomly change brightness, contrast, saturation and hue of the image only, in a random order.

    Same ranges and semantics as torchvision's ``ColorJitter`` (P2P uses 0.4, 0.4, 0.4, 0.2); the factors are
    drawn here so that a ``generator`` can be used. Mask and regions are untouched.
    """

    _ADJUST = {
        "brightness": F.adjust_brightness,
        "contrast": F.adjust_contrast,
        "saturation": F.adjust_saturation,
        "hue": F.adjust_hue,
    }

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, got {value!r}")
        if not 0 <= hue <= 0.5:
            raise ConfigError(f"hue must be in [0, 0.5], got {hue!r}")
        self.ranges = {
            "brightness": (max(0.0, 1 - brightness), 1 + brightness) if brightness else None,
            "contrast": (max(0.0, 1 - contrast), 1 + contrast) if contrast else None,
            "saturation": (max(0.0, 1 - saturation), 1 + saturation) if saturation else None,
            "hue": (-hue, hue) if hue else None,
        }
        self.generator = generator

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        _check_sample(sample)
        names = list(self.ranges)
        image = sample["image"]
        for index in torch.randperm(len(names), generator=self.generator).tolist():
            value_range = self.ranges[names[index]]
            if value_range is not None:
                image = self._ADJUST[names[index]](image, _uniform(*value_range, self.generator))
        return {**sample, "image": image}

    def __repr__(self) -> str:
        return f"ColorJitter({self.ranges})"
