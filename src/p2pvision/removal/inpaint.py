"""Fills that look at the hole: classical inpainting (OpenCV Telea / Navier-Stokes, scikit-image biharmonic)
and a user callable (the slot for a generative inpainter such as LaMa or DeepFill).

The hole is ``~keep`` (``keep < 0.5`` for soft masks). Each image is inpainted on its own on the CPU; OpenCV and
scikit-image release the GIL, so a thread pool runs images in parallel. The fill equals the image outside the
hole and is not differentiable (the blend with a soft mask still is). An image with nothing kept has nothing to
inpaint from and is filled with ``empty_value`` (grey by default).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic
from torch import Tensor

from p2pvision.errors import ConfigError
from p2pvision.removal.base import REMOVALS, Removal, check_inputs, hole_of

ImageFill = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_workers() -> int:
    """Threads for per-image inpainting: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


class HoleFill(Removal):
    """Base of fills computed per image from the hole; subclasses implement :meth:`inpaint_one`."""

    hole_dependent = True

    def __init__(self, num_workers: int | None = None, empty_value: float = 0.5) -> None:
        self.num_workers = default_workers() if num_workers is None else int(num_workers)
        if self.num_workers < 1:
            raise ConfigError(f"num_workers must be >= 1, got {num_workers!r}")
        self.empty_value = float(empty_value)

    @abstractmethod
    def inpaint_one(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """Inpaint one image: float32 (H,W,3) in [0,1] and a bool hole (H,W) with known pixels -> (H,W,3)."""

    def _one(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        if not hole.any():
            return image
        if hole.all():
            return np.full_like(image, self.empty_value)
        return self.inpaint_one(image, hole)

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        if keep is None:
            raise ValueError(f"the {self.name} fill depends on the hole: pass keep")
        check_inputs(images, keep)
        hole = hole_of(keep)
        arrays = images.detach().permute(0, 2, 3, 1).to("cpu", torch.float32).numpy()
        holes = hole.cpu().numpy()
        if self.num_workers > 1 and len(arrays) > 1:
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(arrays))) as pool:
                filled = list(pool.map(self._one, arrays, holes))
        else:
            filled = [self._one(a, h) for a, h in zip(arrays, holes)]
        result = torch.from_numpy(np.stack(filled)).permute(0, 3, 1, 2).to(images)
        return torch.where(hole.unsqueeze(1), result, images.detach())

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "empty_value": self.empty_value}


class OpenCVInpaint(HoleFill):
    """OpenCV ``cv2.inpaint`` on the uint8 image, within ``radius`` pixels of the hole's border."""

    flag: int

    def __init__(self, radius: float = 3.0, num_workers: int | None = None, empty_value: float = 0.5) -> None:
        super().__init__(num_workers, empty_value)
        if not radius > 0:
            raise ConfigError(f"inpainting radius must be > 0, got {radius!r}")
        self.radius = float(radius)

    def inpaint_one(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8))
        filled = cv2.inpaint(pixels, hole.astype(np.uint8), self.radius, self.flag)
        return filled.astype(np.float32) / 255

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "radius": self.radius}


@REMOVALS.register()
class TeleaInpaint(OpenCVInpaint):
    """OpenCV fast-marching inpainting (Telea 2004)."""

    name = "telea"
    flag = cv2.INPAINT_TELEA


@REMOVALS.register()
class NavierStokesInpaint(OpenCVInpaint):
    """OpenCV Navier-Stokes inpainting (Bertalmio et al. 2001)."""

    name = "ns"
    flag = cv2.INPAINT_NS


@REMOVALS.register()
class BiharmonicInpaint(HoleFill):
    """scikit-image ``inpaint_biharmonic`` (smooth, slower: tens to hundreds of ms per 224 px image)."""

    name = "biharmonic"

    def inpaint_one(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return inpaint_biharmonic(image, hole, channel_axis=-1).astype(np.float32)


@REMOVALS.register()
class CallableFill(HoleFill):
    """A user function ``fill(image, hole_mask) -> image`` on NumPy arrays: float32 (H,W,3) in [0,1] and a
    bool (H,W) hole; it returns (H,W,3). Plug a generative inpainter in here. Only hole pixels are used."""

    name = "callable"

    def __init__(self, function: ImageFill, num_workers: int = 1, empty_value: float = 0.5) -> None:
        if not callable(function):
            raise ConfigError(f"the callable fill needs a function fill(image, hole_mask), got {function!r}")
        super().__init__(num_workers, empty_value)
        self.function = function

    def inpaint_one(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        filled = np.asarray(self.function(image, hole), dtype=np.float32)
        if filled.shape != image.shape:
            raise ValueError(f"fill function returned shape {filled.shape}, expected {image.shape}")
        return filled

    @property
    def params(self) -> dict[str, Any]:
        label = getattr(self.function, "__qualname__", type(self.function).__name__)
        return {**super().params, "function": label}
