"""Learned inpainting: a compact gated-convolution inpainter trained by ``p2pvision train --config inpainter``
(``learned``), and LaMa's released TorchScript format (``lama``), both behind the removal interface.

The network (:class:`GatedInpainter`) follows DeepFill v2's gated convolution (Yu et al., ICCV 2019: every
convolution also outputs a soft gate that learns where its input is valid, so free-form holes such as superpixels
and meaningful-perturbation masks need no hand-made mask update as in partial convolutions) in the light-weight
form of HiFill (Yi et al., CVPR 2020: a single gate channel per layer, the image inpainted at a reduced resolution
and sent back to full resolution). Dilated gated convolutions give the coarse grid an image-wide receptive field,
which LaMa gets from Fourier convolutions. The reduced resolution keeps it cheap: the region game refills the hole
of every coalition, so the fill runs as often as the classifier.

Use it as ``make_removal("learned:PATH")`` or ``--removal learned:PATH`` (PATH: the ``model`` folder that training
writes, or its ``model.safetensors``), and a LaMa TorchScript file as ``lama:PATH``. The fill runs batched on the
images' device, equals the image outside the hole (known pixels stay bit-identical), and is not differentiable:
gradients flow through the blend ``images * keep + fill * (1 - keep)``, as for every hole-dependent fill.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from p2pvision.cache import atomic_folder
from p2pvision.errors import ConfigError, WeightsError, path_problem
from p2pvision.removal.base import REMOVALS, Removal, check_inputs, hole_of

FORMAT = "p2pvision-inpainter"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SHARP = 1000.0  # the sharp first fill's push-pull sharpness: any known pixel in a cell sets the cell's colour


class GatedConv(nn.Module):
    """A 3x3 gated convolution with one gate channel: ``elu(features) * sigmoid(gate)``."""

    def __init__(self, channels_in: int, channels_out: int, dilation: int = 1) -> None:
        super().__init__()
        self.channels_out = channels_out
        self.conv = nn.Conv2d(channels_in, channels_out + 1, 3, padding=dilation, dilation=dilation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return F.elu(y[:, : self.channels_out]) * torch.sigmoid(y[:, self.channels_out :])


def push_pull(images: Tensor, known: Tensor, sharpness: float = 1.0) -> Tensor:
    """A first fill of every pixel from the known ones (push-pull interpolation, Gortler et al. 1996): the known
    colours and the known mask (N,1,H,W) are averaged down a pyramid to one pixel, then every level fills what it
    does not know from the level above (bilinear), trusting its own average by ``sharpness`` x the share of the
    pixel it knows (at most 1). Sharpness 1 gives smooth fills; a large sharpness extends the nearest known
    colours into the hole, as fast-marching inpainting does."""
    levels = [(images * known, known)]
    while min(levels[-1][1].shape[2:]) > 1:
        colours, weights = levels[-1]
        levels.append((F.avg_pool2d(colours, 2, ceil_mode=True), F.avg_pool2d(weights, 2, ceil_mode=True)))
    colours, weights = levels[-1]
    fill = colours.sum((2, 3), keepdim=True) / weights.sum((2, 3), keepdim=True).clamp_min(1e-6)
    for colours, weights in reversed(levels):
        above = F.interpolate(fill, size=colours.shape[2:], mode="bilinear", align_corners=False)
        share = (weights * sharpness).clamp(0, 1)
        fill = colours / weights.clamp_min(1e-6) * share + above * (1 - share)
    return fill


class GatedInpainter(nn.Module):
    """Images (N,3,H,W) in [0,1] and holes (N,H,W) (True or 1: to invent) -> a fill (N,3,H,W) in [0,1].

    Two first fills (:func:`push_pull`, the coarse stage: a smooth one and a sharp one, which extends the nearest
    known colours) and the known-pixel mask are folded into ``scale`` x ``scale`` cells (pixel unshuffle) and go
    through gated convolutions with ``dilations`` on that grid with ``channels`` features; a 1x1 convolution unfolds
    the result back to full resolution (pixel shuffle) as a correction, in logits, of the sharp fill. That
    convolution starts at zero, so an untrained network gives the sharp push-pull fill. Sides that are not multiples
    of ``scale`` are padded.
    """

    def __init__(self, channels: int = 32, scale: int = 4, dilations: tuple[int, ...] = (2, 4, 8)) -> None:
        super().__init__()
        if channels < 1 or scale < 1 or any(d < 1 for d in dilations):
            raise ConfigError(f"inpainter channels, scale and dilations must be >= 1, got {channels}, {scale}, "
                              f"{list(dilations)}")  # fmt: skip
        self.channels, self.scale, self.dilations = int(channels), int(scale), tuple(int(d) for d in dilations)
        self.encode = GatedConv(7 * scale * scale, channels)
        self.context = nn.Sequential(*(GatedConv(channels, channels, d) for d in self.dilations))
        self.decode = GatedConv(2 * channels, channels)
        self.out = nn.Conv2d(channels, 3 * scale * scale, 1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # the convolution has a bias

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (saved with the weights)."""
        return {"channels": self.channels, "scale": self.scale, "dilations": list(self.dilations)}

    def forward(self, images: Tensor, holes: Tensor) -> Tensor:
        known = 1 - holes.to(images.dtype).unsqueeze(1)
        height, width = images.shape[2:]
        first = push_pull(images, known, SHARP)
        x = torch.cat([first, push_pull(images, known), known], dim=1)
        pad_h, pad_w = (-height) % self.scale, (-width) % self.scale
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        features = self.encode(F.pixel_unshuffle(x, self.scale))
        x = self.decode(torch.cat([features, self.context(features)], dim=1))
        correction = F.pixel_shuffle(self.out(x), self.scale)[:, :, :height, :width]
        return torch.sigmoid(torch.logit(first.clamp(1e-3, 1 - 1e-3)) + correction)


def save_inpainter(model: GatedInpainter, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``folder`` (``model.safetensors`` + ``config.json``, atomically); returns the folder."""
    with atomic_folder(folder) as tmp:
        state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        config = {"format": FORMAT, "version": 1, "architecture": "gated", **model.settings, **(extra or {})}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return Path(folder)


def _model_folder(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    folder = path.parent if path.name in (WEIGHTS_FILE, CONFIG_FILE) else path
    problem = path_problem(folder, "folder")
    if problem is not None:
        raise WeightsError(f"inpainter '{path}' {problem}: give the model folder that 'p2pvision train --config "
                           "inpainter' writes (model.safetensors + config.json)")  # fmt: skip
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        problem = path_problem(folder / name)
        if problem is not None:
            raise WeightsError(f"inpainter '{folder / name}' {problem}: an inpainter folder holds {WEIGHTS_FILE} and "
                               f"{CONFIG_FILE} (train one with 'p2pvision train --config inpainter')")  # fmt: skip
    return folder


def load_inpainter(path: str | os.PathLike[str]) -> GatedInpainter:
    """The inpainter saved in ``path`` (its folder or its ``model.safetensors``), in eval mode on the CPU."""
    folder = _model_folder(path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"inpainter config '{folder / CONFIG_FILE}' is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise WeightsError(f"'{folder / CONFIG_FILE}' is not a p2pvision inpainter config (format '{FORMAT}'): "
                           "train one with 'p2pvision train --config inpainter'")  # fmt: skip
    try:
        model = GatedInpainter(int(config["channels"]), int(config["scale"]), tuple(config["dilations"]))
        state = load_file(str(folder / WEIGHTS_FILE))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise WeightsError(f"inpainter '{folder}' cannot be loaded ({type(exc).__name__}: {message}): its weights "
                           "and config.json must come from one training run") from None  # fmt: skip
    if not all(torch.isfinite(value).all() for value in model.state_dict().values()):
        raise WeightsError(f"inpainter '{folder / WEIGHTS_FILE}' holds NaN or infinite weights: train it again")
    return model.eval()


def file_digest(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256: which weights a score was computed with."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class NetworkFill(Removal):
    """Base of fills computed by a network from the image and the hole, batched on the images' device."""

    hole_dependent = True
    weights_file: Path

    def __init__(self, path: str, batch_size: int = 64, empty_value: float = 0.5) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        self.path, self.batch_size, self.empty_value = str(path), int(batch_size), float(empty_value)
        self.network = self.load(Path(path))
        self.digest = file_digest(self.weights_file)

    @abstractmethod
    def load(self, path: Path) -> nn.Module:
        """The network in eval mode; sets :attr:`weights_file` (the file :attr:`digest` identifies)."""

    def run(self, images: Tensor, holes: Tensor) -> Tensor:
        """The network's fill of images (n,3,H,W) for bool holes (n,H,W)."""
        return self.network(images, holes)

    def fill(self, images: Tensor, keep: Tensor | None, regions: Tensor | None = None) -> Tensor:
        if keep is None:
            raise ValueError(f"the {self.name} fill depends on the hole: pass keep")
        check_inputs(images, keep)
        hole = hole_of(keep).to(images.device)
        source = images.detach()
        self.network.to(source.device)
        with torch.no_grad():
            parts = [self.run(source[i : i + self.batch_size].float(), hole[i : i + self.batch_size])
                     for i in range(0, len(source), self.batch_size)]  # fmt: skip
            result = torch.cat(parts).to(source.dtype) if parts else source.clone()
            nothing_kept = hole.flatten(1).all(1)
            result[nothing_kept] = self.empty_value
        return torch.where(hole.unsqueeze(1), result, source)

    @property
    def params(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.digest, "empty_value": self.empty_value}


@REMOVALS.register(aliases=("inpainter",))
class LearnedInpaint(NetworkFill):
    """The gated-convolution inpainter trained by ``p2pvision train --config inpainter`` (``path``: its model
    folder). Give it as ``learned:PATH``."""

    name = "learned"

    def load(self, path: Path) -> nn.Module:
        self.weights_file = _model_folder(path) / WEIGHTS_FILE
        return load_inpainter(path)

    @property
    def params(self) -> dict[str, Any]:
        settings = self.network.settings if isinstance(self.network, GatedInpainter) else {}
        return {**super().params, **settings}


@REMOVALS.register()
class LamaInpaint(NetworkFill):
    """LaMa (Suvorov et al., WACV 2022) in its released TorchScript form (``big-lama.pt``, as lama-cleaner loads
    it): ``model(image, mask)`` with an image (N,3,H,W) in [0,1] and a mask (N,1,H,W) that is 1 in the hole,
    returning the inpainted image in [0,1]. Sides are padded to multiples of ``modulo`` by repeating the edge.
    Give it as ``lama:PATH``; loading runs the file's TorchScript code, so use files you trust."""

    name = "lama"

    def __init__(self, path: str, batch_size: int = 8, modulo: int = 8, empty_value: float = 0.5) -> None:
        if int(modulo) < 1:
            raise ConfigError(f"modulo must be >= 1, got {modulo!r}")
        self.modulo = int(modulo)
        super().__init__(path, batch_size, empty_value)

    def load(self, path: Path) -> nn.Module:
        problem = path_problem(path)
        if problem is not None:
            raise WeightsError(f"LaMa model '{path}' {problem}: give LaMa's TorchScript file (e.g. big-lama.pt)")
        try:
            network = torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError, OSError) as exc:
            message = " ".join(str(exc).split())[:160]
            raise WeightsError(f"LaMa model '{path}' is not a TorchScript file ({message}): give the released "
                               "TorchScript export (big-lama.pt)") from None  # fmt: skip
        self.weights_file = path
        return network.eval()

    def run(self, images: Tensor, holes: Tensor) -> Tensor:
        height, width = images.shape[2:]
        mask = holes.to(images.dtype).unsqueeze(1)
        pad_h, pad_w = (-height) % self.modulo, (-width) % self.modulo
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
            mask = F.pad(mask, (0, pad_w, 0, pad_h), mode="replicate")
        output = self.network(images, mask)
        if not isinstance(output, Tensor) or output.shape != images.shape:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise WeightsError(f"LaMa model '{self.path}' returned {shape} for images {tuple(images.shape)}: "
                               "expected the inpainted images (N,3,H,W)")  # fmt: skip
        return output[:, :, :height, :width].clamp(0, 1)

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "modulo": self.modulo}
