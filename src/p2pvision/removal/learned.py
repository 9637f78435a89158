"""Learned inpainting: a compact gated-convolution inpainter trained by ``p2pvision train --config inpainter``
(``learned``), and LaMa's released TorchScript format (``lama``), both behind the removal interface.

The network (:class:`GatedInpainter`) is a learned correction of a classical first fill, and both are cheap, since
the region game refills the hole of every coalition and so runs the fill as often as the classifier. The first fill
(:func:`harmonic_fill`, no weights) is harmonic (membrane) inpainting, solved by a cascadic multigrid on a
push-pull pyramid at half resolution: on the built-in photos its L1 error inside the hole is already lower than
OpenCV's Telea, which a 4x-coarser network on a push-pull fill alone did not reach. The correction follows DeepFill
v2's gated convolution (Yu et al., ICCV 2019: every convolution also outputs a soft gate that learns where its input
is valid, so free-form holes such as superpixels and meaningful-perturbation masks need no hand-made mask update as
in partial convolutions) in the light-weight form of HiFill (Yi et al., CVPR 2020: a single gate channel per layer,
the image inpainted at a reduced resolution and sent back to full resolution); dilated gated convolutions give its
coarse grid an image-wide receptive field, which LaMa gets from Fourier convolutions.

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
VERSION = 2  # version 1 (a coarse grid over two push-pull fills, until the fill of issue 16's follow-up) cannot load


class GatedConv(nn.Module):
    """A gated convolution with one gate channel: ``elu(features) * sigmoid(gate)`` (``stride`` > 1: a
    ``kernel`` x ``kernel`` convolution with that stride and no padding, which folds cells into one position)."""

    def __init__(
        self, channels_in: int, channels_out: int, dilation: int = 1, kernel: int = 3, stride: int = 1
    ) -> None:
        super().__init__()
        self.channels_out = channels_out
        padding = dilation * (kernel // 2) if stride == 1 else 0
        self.conv = nn.Conv2d(channels_in, channels_out + 1, kernel, stride, padding, dilation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return F.elu(y[:, : self.channels_out]) * torch.sigmoid(y[:, self.channels_out :])


def _neighbour_sum(x: Tensor) -> Tensor:
    """The sum of each pixel's 4 neighbours (edges repeated)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]


def _half(x: Tensor) -> Tensor:
    """Mean of each 2x2 cell (even sides), as the sum of four strided views: about 3x faster on the CPU than a
    strided convolution or average pooling, which pay their setup cost on these small maps."""
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


def _coarser(x: Tensor) -> Tensor:
    """The next level of a push-pull pyramid: the mean of each 2x2 cell, a last odd row or column averaged alone."""
    if x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0:
        return _half(x)
    return F.avg_pool2d(x, 2, ceil_mode=True)


def _finer(x: Tensor, size: torch.Size) -> Tensor:
    """Nearest-neighbour upsampling of ``x`` to ``size`` (h, w): a broadcast view when it doubles both sides."""
    count, channels, height, width = x.shape
    if tuple(size) == (2 * height, 2 * width):
        return (
            x[:, :, :, None, :, None]
            .expand(count, channels, height, 2, width, 2)
            .reshape(count, channels, 2 * height, 2 * width)
        )
    return F.interpolate(x, size=size, mode="nearest")


def _double(x: Tensor) -> Tensor:
    """Bilinear upsampling by 2 (as ``F.interpolate(..., scale_factor=2, mode="bilinear")``, edges repeated),
    written as two separable passes of weights 3/4 and 1/4: cheaper here than the interpolation kernel."""
    count, channels, height, width = x.shape
    padded = F.pad(x, (0, 0, 1, 1), mode="replicate")
    rows = torch.stack([torch.lerp(padded[:, :, :-2], x, 0.75), torch.lerp(padded[:, :, 2:], x, 0.75)], dim=3)
    rows = rows.view(count, channels, 2 * height, width)
    padded = F.pad(rows, (1, 1, 0, 0), mode="replicate")
    both = torch.stack([torch.lerp(padded[..., :-2], rows, 0.75), torch.lerp(padded[..., 2:], rows, 0.75)], dim=4)
    return both.view(count, channels, 2 * height, 2 * width)


def harmonic_fill(colours: Tensor, weights: Tensor, iterations: int = 4, fine_iterations: int = 2) -> Tensor:
    """A fill (N,3,h,w) of every cell close to the harmonic (membrane) interpolation of the cells that know no
    pixel from those that know some: the smoothest fill (least gradient energy) with the known colours as its
    boundary. ``colours`` are sums of known colours times their share (N,3,h,w) and ``weights`` the known share
    of each cell (N,1,h,w), as average pooling of ``images * known`` and ``known`` gives them.

    Solved by a cascadic multigrid on a push-pull pyramid (Gortler et al. 1996): colours and weights are averaged
    down to one cell; then, from the coarsest level up, the cells that know nothing start from the level above
    (nearest) and take ``iterations`` Jacobi steps of Laplace's equation (``fine_iterations`` at the finest level,
    where a step costs most; none below 4 x 4 cells, where they change nothing that matters), the cells that know
    some keep the mean of their known pixels."""
    levels = [(colours, weights)]
    while min(levels[-1][1].shape[2:]) > 1:
        above_colours, above_weights = levels[-1]
        levels.append((_coarser(above_colours), _coarser(above_weights)))
    colours, weights = levels[-1]
    fill = colours.sum((2, 3), keepdim=True) / weights.sum((2, 3), keepdim=True).clamp_min(1e-6)
    for depth, (colours, weights) in enumerate(reversed(levels[:-1])):
        some = (weights > 0).to(weights.dtype)
        value, unknown = colours / weights.clamp_min(1e-6) * some, 1 - some
        fill = torch.addcmul(value, unknown, _finer(fill, colours.shape[2:]))
        quarter = unknown * 0.25
        steps = fine_iterations if depth == len(levels) - 2 else iterations if min(colours.shape[2:]) >= 4 else 0
        for _ in range(steps):
            fill = torch.addcmul(value, quarter, _neighbour_sum(fill))
    return fill


class GatedInpainter(nn.Module):
    """Images (N,3,H,W) in [0,1] and holes (N,H,W) (True or 1: to invent) -> a fill (N,3,H,W) in [0,1].

    Works at half resolution (2x2 cells), where a pixel-level fill costs a quarter: the known colours and shares
    of the cells go to a harmonic first fill (:func:`harmonic_fill`, no weights), which with the known shares goes
    through a gated convolution that folds ``scale`` x ``scale`` cells into one position, gated convolutions with
    ``dilations`` on that grid with ``channels`` features, and a 1x1 convolution whose output is unfolded to the
    cells (pixel shuffle) as a correction of the first fill. That convolution starts at zero, so an untrained
    network gives the harmonic fill. The corrected fill is upsampled (bilinear) to full resolution; it is the fill
    of the hole only (the removal keeps the known pixels' colours, and training scores the hole only). Sides that
    are not multiples of 2 x ``scale`` are padded.
    """

    def __init__(self, channels: int = 16, scale: int = 8, dilations: tuple[int, ...] = (1, 2),
                 iterations: int = 4, fine_iterations: int = 2) -> None:  # fmt: skip
        super().__init__()
        if channels < 1 or scale < 1 or any(d < 1 for d in dilations) or min(iterations, fine_iterations) < 0:
            raise ConfigError(f"inpainter channels, scale and dilations must be >= 1 and iterations >= 0, got "
                              f"{channels}, {scale}, {list(dilations)}, {iterations}, {fine_iterations}")  # fmt: skip
        self.channels, self.scale, self.dilations = int(channels), int(scale), tuple(int(d) for d in dilations)
        self.iterations, self.fine_iterations = int(iterations), int(fine_iterations)
        self.encode = GatedConv(4, channels, kernel=scale, stride=scale)
        self.context = nn.Sequential(*(GatedConv(channels, channels, d) for d in self.dilations))
        self.out = nn.Conv2d(channels, 3 * scale * scale, 1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]  # the convolution has a bias

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor's arguments (saved with the weights)."""
        return {"channels": self.channels, "scale": self.scale, "dilations": list(self.dilations),
                "iterations": self.iterations, "fine_iterations": self.fine_iterations}  # fmt: skip

    def forward(self, images: Tensor, holes: Tensor) -> Tensor:
        height, width = images.shape[2:]
        known = ((~holes) if holes.dtype == torch.bool else 1 - holes).to(images.dtype).unsqueeze(1)
        colours = images * known
        multiple = 2 * self.scale
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        padded_colours, padded_known = colours, known
        if pad_h or pad_w:  # padded cells know nothing
            padded_colours, padded_known = (F.pad(x, (0, pad_w, 0, pad_h)) for x in (colours, known))
        cell_colours, cell_weights = _half(padded_colours), _half(padded_known)
        fill = harmonic_fill(cell_colours, cell_weights, self.iterations, self.fine_iterations)
        features = self.encode(torch.cat([fill, cell_weights], dim=1))
        fill = fill + F.pixel_shuffle(self.out(features + self.context(features)), self.scale)
        fill = _double(fill)
        if pad_h or pad_w:
            fill = fill[:, :, :height, :width]
        return fill.clamp_(0, 1)


def save_inpainter(model: GatedInpainter, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``folder`` (``model.safetensors`` + ``config.json``, atomically); returns the folder."""
    with atomic_folder(folder) as tmp:
        state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        config = {
            "format": FORMAT,
            "version": VERSION,
            "architecture": "gated-harmonic",
            **model.settings,
            **(extra or {}),
        }
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return Path(folder)


def _folder_of(path: str | os.PathLike[str]) -> Path:
    """The inpainter folder that ``path`` names: the folder itself, or the folder of its weights or config file."""
    path = Path(path)
    return path.parent if path.name in (WEIGHTS_FILE, CONFIG_FILE) else path


def _model_folder(path: str | os.PathLike[str]) -> Path:
    folder = _folder_of(path)
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
    if config.get("version") != VERSION:
        raise WeightsError(
            f"inpainter '{folder}' was saved in format version {config.get('version')}, this p2pvision "
            f"reads version {VERSION}: train it again with 'p2pvision train --config inpainter'"
        )
    try:
        model = GatedInpainter(
            int(config["channels"]),
            int(config["scale"]),
            tuple(config["dilations"]),
            int(config["iterations"]),
            int(config["fine_iterations"]),
        )
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


def weights_digest(path: str | os.PathLike[str], lama: bool = False) -> str | None:
    """:func:`file_digest` of an inpainter's weights (its folder or ``model.safetensors``; with ``lama``, the
    TorchScript file itself); None where that file is missing."""
    path = Path(path) if lama else _folder_of(path) / WEIGHTS_FILE
    return file_digest(path) if path.is_file() else None


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
        if next(self.network.parameters(), source).device != source.device:
            self.network.to(source.device)
        with torch.no_grad():
            parts = [self.run(source[i : i + self.batch_size].float(), hole[i : i + self.batch_size])
                     for i in range(0, len(source), self.batch_size)]  # fmt: skip
            result = (torch.cat(parts) if len(parts) > 1 else parts[0]).to(source.dtype) if parts else source.clone()
            nothing_kept = hole.flatten(1).all(1)
            if bool(nothing_kept.any()):
                result[nothing_kept] = self.empty_value
        if keep.dtype == torch.bool:  # the blend takes the image where keep holds: no second selection here
            return result
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
