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

:class:`BatchAugmentation` is the batched equivalent of ``JointCompose([crop, flip, jitter])`` for images that are
already at the output size (or smaller), as training data are: it augments a whole collated batch on its device
(training applies it after the batch is moved there), so data loading is plain indexing. See its docstring for why
this is exact and what it costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from p2pvision.errors import ConfigError
from p2pvision.regions.ops import relabel_contiguous

__all__ = [
    "AugmentationDraw",
    "BatchAugmentation",
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


def _draw_crop_boxes(
    count: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> np.ndarray:
    """``count`` crop boxes inside a height x width image, (count, 4) int64 rows (top, left, box_height, box_width).

    Each box is drawn as torchvision's ``RandomResizedCrop.get_params`` draws it: up to 10 tries of an area share
    uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, the first box that fits wins and is placed
    uniformly; when none fits, the centre crop of the image clipped to ``ratio``. All tries of all boxes come from
    two calls to torch's RNG (a fixed number of draws per box, so the stream does not depend on which try fitted);
    the arithmetic on these few numbers is NumPy's.
    """
    tries = torch.rand(count, 10, 2, generator=generator, dtype=torch.float64).numpy()
    places = torch.rand(count, 2, generator=generator, dtype=torch.float64).numpy()
    area = height * width * (scale[0] + (scale[1] - scale[0]) * tries[..., 0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_low + (log_high - log_low) * tries[..., 1])
    widths, heights = np.round(np.sqrt(area * aspect)), np.round(np.sqrt(area / aspect))
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    first = fits.argmax(axis=1)[:, None]  # the first try that fits (argmax: the first maximum)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_width, fallback_height = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_width, fallback_height = round(height * ratio[1]), height
    else:
        fallback_width, fallback_height = width, height
    found = fits.any(axis=1)
    box_height = np.where(found, np.take_along_axis(heights, first, 1)[:, 0], fallback_height)
    box_width = np.where(found, np.take_along_axis(widths, first, 1)[:, 0], fallback_width)
    top = np.where(found, np.floor(places[:, 0] * (height - box_height + 1)), (height - fallback_height) // 2)
    left = np.where(found, np.floor(places[:, 1] * (width - box_width + 1)), (width - fallback_width) // 2)
    return np.stack([top, left, box_height, box_width], axis=1).astype(np.int64)


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
        top, left, box_height, box_width = _draw_crop_boxes(1, height, width, self.scale, self.ratio, self.generator)[0]
        return int(top), int(left), int(box_height), int(box_width)

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


_JITTERS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class AugmentationDraw:
    """The random draws of :class:`BatchAugmentation` for a batch of B images (NumPy arrays).

    ``boxes`` (B, 4) int64 crop boxes (top, left, box_height, box_width); ``flips`` (B,) bool; ``jitter_order``
    (B, 4) int64, a permutation of brightness, contrast, saturation, hue per image; ``jitter_factors`` (B, 4)
    float64, the factor of each adjustment (1 for brightness, contrast and saturation, 0 for hue: no change).
    """

    boxes: np.ndarray
    flips: np.ndarray
    jitter_order: np.ndarray
    jitter_factors: np.ndarray


class BatchAugmentation:
    """``JointCompose([crop, flip, jitter])`` applied to every sample of a collated batch at once, on its device.

    A batch is a dict with ``"image"`` (B, 3, H, W) float, masks (B, H, W) bool (``"mask"``, ``*_mask``) and
    ``"regions"`` (B, H, W) int64 (renumbered 0..K'-1 per image afterwards); other keys pass through. Each image
    gets its own crop box (drawn as ``crop.crop_box`` draws it), flip and colour jitter; ``flip`` and ``jitter``
    are optional. The per-sample transforms give the settings (their generators serve only :meth:`per_sample`,
    the same augmentation one sample at a time): call with a ``generator`` (CPU) for reproducible draws, else
    torch's global RNG is used. The draws and the per-image source indices are computed on the CPU (small arrays,
    in NumPy), so a seed gives the same augmentation on every device.

    Why this is the same augmentation, done once per batch: training images are already at the output size
    (semi-synthetic data is generated at it, local data resized and centre-cropped to it), so every crop box is
    at most the output size and the resize only enlarges. Enlarging bilinearly with antialiasing is then plain
    bilinear interpolation (the antialiasing filter only widens when shrinking), which is separable: each output
    row (column) blends two source rows (columns) of the box, at source coordinate ``(i + 0.5) * box / out - 0.5``
    clamped to the box, as ``F.resized_crop`` / ``interpolate(align_corners=False)`` do. So one batch is one
    ``gather`` + ``lerp`` per axis; masks and region maps take the source pixel that contains each output
    pixel's centre, ``floor((i + 0.5) * box / out)``, computed in exact integer arithmetic, with one ``gather``
    each. A flip reverses the column indices (no extra pass); colour jitter runs each adjustment once on the
    images that take it at that position of their random order. Region maps are renumbered with
    :func:`relabel_contiguous`'s presence table (no sort). About 20 tensor operations per batch in all. Per image
    this matches the per-sample transforms to float rounding (about 1e-6; masks and regions identical), see
    ``tests/test_transforms.py``; ``benchmarks/bench_data_loading.py`` measures the cost against the per-sample
    path (four ``resized_crop`` calls and a sort per sample).

    Images larger than the output size are refused: give them a deterministic resize first (the data module
    does), since shrinking would need the antialiasing filter.
    """

    def __init__(
        self,
        crop: JointRandomResizedCrop,
        flip: JointRandomHorizontalFlip | None = None,
        jitter: ColorJitter | None = None,
    ) -> None:
        self.crop, self.flip, self.jitter = crop, flip, jitter

    def draw(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> AugmentationDraw:
        """The random draws for ``batch_size`` images of ``height`` x ``width``, in a fixed order."""
        boxes = _draw_crop_boxes(batch_size, height, width, self.crop.scale, self.crop.ratio, generator)
        flips = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy() < (
            self.flip.p if self.flip is not None else 0.0
        )
        order = torch.rand(batch_size, len(_JITTERS), generator=generator, dtype=torch.float64).numpy().argsort(1)
        uniform = torch.rand(batch_size, len(_JITTERS), generator=generator, dtype=torch.float64).numpy()
        factors = np.tile(np.array([1.0, 1.0, 1.0, 0.0]), (batch_size, 1))
        for index, name in enumerate(_JITTERS):
            value_range = self.jitter.ranges[name] if self.jitter is not None else None
            if value_range is not None:
                factors[:, index] = value_range[0] + (value_range[1] - value_range[0]) * uniform[:, index]
        return AugmentationDraw(boxes, flips, order, factors)

    def __call__(self, batch: Mapping[str, Any], generator: torch.Generator | None = None) -> Sample:
        height, width = _check_batch(batch, self.crop.size)
        return self.apply(batch, self.draw(batch["image"].shape[0], height, width, generator))

    def apply(self, batch: Mapping[str, Any], drawn: AugmentationDraw) -> Sample:
        """Augment ``batch`` with the given draws (see :meth:`draw`)."""
        height, width = _check_batch(batch, self.crop.size)
        top, left, box_height, box_width = drawn.boxes.T
        inside = (top >= 0) & (left >= 0) & (box_height > 0) & (box_width > 0)
        inside &= (top + box_height <= height) & (left + box_width <= width)
        if len(drawn.boxes) != batch["image"].shape[0] or not inside.all():
            raise ValueError(f"the draws need {batch['image'].shape[0]} crop boxes inside {height}x{width} images")
        images: Tensor = batch["image"]
        rows, row_weights = _axis_indices(top, box_height, self.crop.size[0])
        columns, column_weights = _axis_indices(left, box_width, self.crop.size[1])
        columns[:, drawn.flips], column_weights[drawn.flips] = (  # a flip reverses the columns
            columns[:, drawn.flips, ::-1],
            column_weights[drawn.flips, ::-1],
        )
        rows_on, row_weights_on, columns_on, column_weights_on = (
            torch.from_numpy(array).to(images.device) for array in (rows, row_weights, columns, column_weights)
        )
        out = dict(batch)
        resized = _enlarge_bilinear(images, rows_on[1:], row_weights_on, columns_on[1:], column_weights_on)
        out["image"] = _jitter(resized, drawn, self.jitter)
        pixels = (rows_on[0] * width).unsqueeze(2) + columns_on[0].unsqueeze(1)  # nearest-exact source pixels
        for key in _mask_keys(batch) + (["regions"] if batch.get("regions") is not None else []):
            maps = batch[key].flatten(1).gather(1, pixels.flatten(1)).view(pixels.shape)
            out[key] = relabel_contiguous(maps) if key == "regions" else maps
        return out

    def per_sample(self) -> JointCompose:
        """The same augmentation for one sample at a time (drawing from torch's RNG or the steps' generators)."""
        return JointCompose([step for step in (self.crop, self.flip, self.jitter) if step is not None])

    def __repr__(self) -> str:
        return f"BatchAugmentation({self.crop!r}, flip={self.flip!r}, jitter={self.jitter!r})"


def _check_batch(batch: Mapping[str, Any], size: tuple[int, int]) -> tuple[int, int]:
    """Check the shapes and dtypes of a collated batch; returns the images' (H, W)."""
    image = batch.get("image")
    if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3 or not image.dtype.is_floating_point:
        described = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"batch['image'] must be a float tensor (B, 3, H, W), got {described}")
    shape = (image.shape[0], *image.shape[2:])
    for key, dtype in [(key, torch.bool) for key in _mask_keys(batch)] + [("regions", torch.int64)]:
        value = batch.get(key)
        if value is not None and (not isinstance(value, Tensor) or value.dtype != dtype or tuple(value.shape) != shape):
            described = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"batch[{key!r}] must be a {dtype} tensor of shape {shape}, got {described}")
    height, width = shape[1], shape[2]
    if height > size[0] or width > size[1]:
        raise ValueError(
            f"images of {height}x{width} are larger than the output size {size[0]}x{size[1]}: the batched crop only "
            "enlarges; resize them to the output size first"
        )
    return height, width


def _axis_indices(start: np.ndarray, length: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source pixels along one axis for output pixels 0..size-1 of the crops [start, start + length), (B,) each.

    Returns (3, B, size) int64 ``nearest``, ``low``, ``high`` and (B, size) float64 ``weight``: the pixel holding
    each output pixel's centre (exact integer arithmetic), and the two pixels bilinear interpolation blends with the
    weight of ``high``, at source coordinate ``(i + 0.5) * length / size - 0.5`` clamped to the crop, as
    ``interpolate(align_corners=False)`` computes them.
    """
    steps = np.arange(size)
    begin, extent = start[:, None], length[:, None]
    nearest = ((2 * steps + 1) * extent) // (2 * size)
    source = np.maximum((steps + 0.5) * extent / size - 0.5, 0.0)
    low = np.floor(source)
    high = np.minimum(low + 1, extent - 1)
    indices = np.stack([nearest, low.astype(np.int64), high.astype(np.int64)]) + begin
    return indices.astype(np.int64), source - low


def _enlarge_bilinear(
    images: Tensor, rows: Tensor, row_weights: Tensor, columns: Tensor, column_weights: Tensor
) -> Tensor:
    """Bilinear resampling of (B, C, H, W) images at (2, B, h) rows and (2, B, w) columns (low, high; from
    :func:`_axis_indices`) with the weights of the high ones: per axis, one ``gather`` of both neighbours and one
    ``lerp``."""
    batch, channels, _, width = images.shape
    out_height, out_width = rows.shape[2], columns.shape[2]
    index = rows.transpose(0, 1).reshape(batch, 1, 2 * out_height, 1)  # each image's low rows, then its high rows
    pairs = images.gather(2, index.expand(batch, channels, 2 * out_height, width))
    weight = row_weights.to(images.dtype).view(batch, 1, out_height, 1)
    lines = torch.lerp(pairs[:, :, :out_height], pairs[:, :, out_height:], weight)
    index = columns.transpose(0, 1).reshape(batch, 1, 1, 2 * out_width)
    pairs = lines.gather(3, index.expand(batch, channels, out_height, 2 * out_width))
    weight = column_weights.to(images.dtype).view(batch, 1, 1, out_width)
    return torch.lerp(pairs[..., :out_width], pairs[..., out_width:], weight)


def _grey(images: Tensor) -> Tensor:
    """Luma of (N, 3, H, W) images, (N, 1, H, W), with torchvision's weights."""
    red, green, blue = images.unbind(dim=1)
    return (0.2989 * red + 0.587 * green + 0.114 * blue).unsqueeze(1)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (images * factor + other * (1 - factor)).clamp_(0, 1)


def _adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of (N, 3, H, W) images in [0, 1] by ``shift`` (N, 1, 1, 1) turns, via HSV as torchvision's
    ``adjust_hue`` (Pillow's conversion) does."""
    red, green, blue = images.unbind(dim=1)
    value, smallest = images.amax(dim=1), images.amin(dim=1)
    spread = value - smallest
    grey = spread == 0  # hue and saturation are 0 there; avoid dividing by 0
    saturation = spread / torch.where(grey, torch.ones_like(value), value)
    divisor = torch.where(grey, torch.ones_like(spread), spread)
    red_c, green_c, blue_c = (value - red) / divisor, (value - green) / divisor, (value - blue) / divisor
    hue = torch.where(
        value == red, blue_c - green_c, torch.where(value == green, 2 + red_c - blue_c, 4 + green_c - red_c)
    )
    hue = (hue / 6 + 1).remainder(1.0).add(shift.view(-1, 1, 1)).remainder(1.0)
    sector_float = (hue * 6).floor()
    fraction = hue * 6 - sector_float
    sector = sector_float.to(torch.int64).remainder(6)
    p = (value * (1 - saturation)).clamp_(0, 1)
    q = (value * (1 - saturation * fraction)).clamp_(0, 1)
    t = (value * (1 - saturation * (1 - fraction))).clamp_(0, 1)
    choices = torch.stack([value, p, q, t], dim=1)  # (N, 4, H, W)
    # which of (value, p, q, t) each channel takes in each of the six hue sectors
    table = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=images.device)
    return choices.gather(1, table[:, sector].movedim(0, 1))


_BATCH_ADJUST: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "brightness": lambda images, factor: (images * factor).clamp_(0, 1),
    "contrast": lambda images, factor: _blend(images, _grey(images).mean(dim=(1, 2, 3), keepdim=True), factor),
    "saturation": lambda images, factor: _blend(images, _grey(images), factor),
    "hue": _adjust_hue,
}


def _jitter(images: Tensor, drawn: AugmentationDraw, jitter: ColorJitter | None) -> Tensor:
    """Each image's adjustments in its own random order: at each position of the order, every adjustment runs
    once on the images that take it there (indices known on the CPU, so no device synchronisation)."""
    if jitter is None:
        return images
    for position in range(len(_JITTERS)):
        for index, name in enumerate(_JITTERS):
            chosen = np.flatnonzero(drawn.jitter_order[:, position] == index)
            if jitter.ranges[name] is None or len(chosen) == 0:
                continue
            factor = torch.from_numpy(drawn.jitter_factors[chosen, index]).to(images.device, images.dtype)
            rows = torch.from_numpy(chosen).to(images.device)
            adjusted = _BATCH_ADJUST[name](images.index_select(0, rows), factor.view(-1, 1, 1, 1))
            images = images.index_copy(0, rows, adjusted)
    return images
