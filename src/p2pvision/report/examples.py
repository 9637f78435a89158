"""The example tensors a benchmark cell stores for the report (safetensors): images as uint8, maps, keep, masks."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from p2pvision.cache import atomic_path


def save_examples(kept: list[dict[str, Tensor]], path: str | os.PathLike[str]) -> None:
    """Concatenate the batches of example tensors in ``kept`` and write them to ``path`` atomically (images in
    [0, 1] as uint8, booleans as uint8)."""
    tensors = {name: torch.cat([part[name] for part in kept]) for name in kept[0]}
    tensors["images"] = (tensors["images"].clamp(0, 1) * 255).round().to(torch.uint8)
    tensors = {name: value.to(torch.uint8) if value.dtype == torch.bool else value for name, value in tensors.items()}
    with atomic_path(Path(path)) as tmp:
        save_file({key: value.contiguous() for key, value in tensors.items()}, str(tmp))


def load_examples(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The stored example tensors of a cell (images as uint8, maps, keep and masks as stored)."""
    return load_file(str(path))
