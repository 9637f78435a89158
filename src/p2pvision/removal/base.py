"""The removal interface: how the pixels of removed regions are filled before the classifier sees the image.

A :class:`Removal` takes images (N, 3, H, W) in [0, 1] and a ``keep`` mask (N, H, W) and returns the images
where ``keep`` holds and a *fill* elsewhere. ``keep`` is either bool (hard removal: kept pixels stay
bit-identical) or float in [0, 1] (soft removal, as in P2P training and meaningful perturbation: the result is
``images * keep + fill * (1 - keep)``, differentiable with respect to ``images`` and ``keep``).

Fills are of two kinds. Most (constant colours, per-region mean, blur, noise) do not depend on where the hole
is: ``hole_dependent`` is False and :meth:`Removal.fill` may be called once per image with ``keep=None`` and
reused for every mask, which is what the region game does. Inpainting fills look at the hole (``keep < 0.5``)
and are recomputed for every mask; they are not differentiable (the blend still is).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

from p2pvision.registry import Registry


def check_inputs(images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> None:
    """Raise ``ValueError`` unless images are float (N,3,H,W) and keep/regions are (N,H,W)."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.dtype.is_floating_point:
        raise ValueError(f"images must be a float tensor (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    expected = (images.shape[0], *images.shape[2:])
    if keep is not None:
        if tuple(keep.shape) != expected:
            raise ValueError(f"keep must have shape {expected} to match the images, got {tuple(keep.shape)}")
        if keep.dtype != torch.bool and not keep.dtype.is_floating_point:
            raise ValueError(f"keep must be bool or float in [0, 1], got {keep.dtype}")
    if regions is not None and tuple(regions.shape) != expected:
        raise ValueError(f"regions must have shape {expected} to match the images, got {tuple(regions.shape)}")


def blend(images: Tensor, keep: Tensor, fill: Tensor) -> Tensor:
    """``images`` where ``keep`` else ``fill``: exact selection for bool ``keep``, linear blend for float."""
    if keep.dtype == torch.bool:
        return torch.where(keep.unsqueeze(1), images, fill)
    weight = keep.unsqueeze(1).to(images.dtype)
    return images * weight + fill * (1 - weight)


def hole_of(keep: Tensor) -> Tensor:
    """The pixels a fill must invent: ``~keep`` for bool masks, ``keep < 0.5`` for soft ones."""
    return ~keep if keep.dtype == torch.bool else keep < 0.5


REMOVALS: Registry[type] = Registry("removal", package="p2pvision.removal")


class Removal(ABC):
    """Fills removed pixels. Subclasses implement :meth:`fill`; calling the object blends image and fill."""

    name: ClassVar[str]
    hole_dependent: ClassVar[bool] = False
    needs_regions: ClassVar[bool] = False

    def __call__(self, images: Tensor, keep: Tensor, regions: Tensor | None = None) -> Tensor:
        """Images (N,3,H,W) with the pixels outside ``keep`` (N,H,W) replaced by the fill."""
        check_inputs(images, keep, regions)
        return blend(images, keep, self.fill(images, keep, regions))

    @abstractmethod
    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        """The fill image (N,3,H,W). ``keep`` may be None when ``hole_dependent`` is False.

        ``regions`` (N,H,W) int64 label maps are needed only by fills with ``needs_regions``.
        """

    @property
    def params(self) -> dict[str, Any]:
        """JSON-serialisable description (``name`` and parameters), reported with every score."""
        return {"name": self.name}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params.items() if key != "name")
        return f"{type(self).__name__}({arguments})"
