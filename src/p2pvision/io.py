"""Image and mask input/output that survives real files.

Every image comes back as an 8-bit RGB ``PIL.Image`` (or a float tensor (3,H,W) in [0,1]) whatever the file
holds: grayscale, alpha, palettes, 16/32-bit integers, floats, CMYK, EXIF rotation, very large images. Files
that cannot be used raise :class:`~p2pvision.errors.ImageLoadError` with one line that names the file, says
what is wrong and what to do.

Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (False) and pixels are decoded eagerly,
so a truncated file is reported instead of silently padded with grey.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from p2pvision.cache import atomic_path
from p2pvision.errors import ConfigError, DatasetLayoutError, ImageLoadError

__all__ = ["load_image", "load_image_tensor", "load_mask", "pil_to_tensor", "save_image", "tensor_to_pil"]

DEFAULT_MAX_SIDE = 4096
DEFAULT_MAX_PIXELS = 100_000_000

# Exceptions Pillow raises for files it cannot parse or decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _error(path: Path, cause: str, fix: str) -> ImageLoadError:
    message = f"cannot load image '{path}': {cause}; {fix}"
    return ImageLoadError(" ".join(message.splitlines()))


def _check_file(path: Path) -> None:
    """What is wrong with ``path`` as an image file, said as it is: a missing file, a link loop or a broken link,
    a folder, a FIFO or device, no read permission, an empty file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise _error(path, "it is a symbolic link to a missing file", "fix or remove the link") from None
        raise _error(path, "the file does not exist", "check the path and the working directory") from None
    except OSError as exc:  # ELOOP: a link cycle; EACCES on a parent folder; ENAMETOOLONG...
        cause = "its symbolic links form a loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc)).lower()
        raise _error(path, cause, "check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise _error(path, "it is a directory, not an image file", "pass the path of an image file")
    if not stat.S_ISREG(info.st_mode):
        raise _error(path, "it is not a regular file (a pipe, socket or device)", "pass the path of an image file")
    if not os.access(path, os.R_OK):
        raise _error(path, "permission denied", "make the file readable (chmod) or run as its owner")
    if info.st_size == 0:
        raise _error(path, "the file is empty (0 bytes)", "re-download or re-export it")


def _bomb_error(path: Path, size: tuple[int, int], max_pixels: int) -> ImageLoadError:
    width, height = size
    return _error(
        path,
        f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels} (possible decompression bomb)",
        "downscale the file, or raise max_pixels if you trust it",
    )


def _open(path: Path, max_pixels: int, max_side: int | None = None) -> Image.Image:
    """Open, size-check and fully decode an image file (no mode conversion, no resizing).

    The size is checked from the header alone, before any pixel is decoded. For JPEG files larger than
    ``max_side`` the decoder is asked to downscale by 2, 4 or 8 while decoding (``Image.draft``).
    """
    _check_file(path)
    with warnings.catch_warnings():
        # Our own max_pixels check replaces Pillow's global warning threshold.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise _error(path, f"Pillow refused it as a decompression bomb ({exc})", "downscale the file") from exc
        except Image.UnidentifiedImageError as exc:
            raise _error(
                path, "not a recognised image format or the header is corrupt", "check that it is an image file"
            ) from exc
        except PermissionError:
            raise _error(path, "permission denied", "make the file readable (chmod) or run as its owner") from None
        except _DECODE_ERRORS as exc:
            raise _error(path, f"the header is corrupt ({exc})", "re-download or re-export the file") from exc
        with image:
            if image.width * image.height > max_pixels:
                raise _bomb_error(path, image.size, max_pixels)
            if max_side is not None and image.format == "JPEG" and max(image.size) > max_side:
                scale = max_side / max(image.size)
                image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            try:
                image.load()
            except _DECODE_ERRORS as exc:
                raise _error(
                    path, f"the image data is truncated or corrupt ({exc})", "re-download or re-export the file"
                ) from exc
            try:
                # Returns a new image, which stays usable after the file is closed.
                return ImageOps.exif_transpose(image)
            except _DECODE_ERRORS as exc:
                raise _error(path, f"its EXIF orientation data is corrupt ({exc})", "strip the EXIF data") from exc


def _unit_range(image: Image.Image) -> np.ndarray:
    """Intensities of a 16/32-bit integer or float image as float32 in [0,1].

    16-bit modes are divided by 65535. Mode ``I`` (Pillow's 32-bit integer, also used for 16-bit files) is
    divided by 65535 when its values fit 16 bits, else min-max scaled. Mode ``F`` is kept when its values
    lie in [0,1], else min-max scaled; NaNs become 0.
    """
    values = np.asarray(image, dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and low >= 0 and high <= 65535):
        values = values / 65535.0
    elif not (image.mode == "F" and low >= 0 and high <= 1):
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return values.astype(np.float32)


def _to_rgb(image: Image.Image, background: Sequence[int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent pixels are composited over ``background``."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        gray = np.round(_unit_range(image) * 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*tuple(background)[:3], 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return image.convert("RGB")


def _downscale(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is None or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def load_image(
    path: str | os.PathLike[str],
    *,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: Sequence[int] = (255, 255, 255),
) -> Image.Image:
    """Load an image file as 8-bit RGB, upright (EXIF orientation applied).

    Args:
        path: the image file.
        max_side: if the longer side exceeds this, the image is downscaled (aspect kept); None keeps it.
        max_pixels: files whose header claims more pixels are refused before decoding.
        background: RGB colour that transparent pixels are composited over.

    Raises:
        ImageLoadError: the file is missing, empty, not an image, corrupt, truncated or too large.
    """
    path = Path(path)
    image = _open(path, max_pixels, max_side)
    try:
        rgb = _to_rgb(image, background)
    except ValueError as exc:
        raise _error(path, f"colour mode {image.mode} cannot be converted to RGB ({exc})", "save it as RGB") from exc
    return _downscale(rgb, max_side)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """An image as float32 (3,H,W) in [0,1]; non-RGB modes are converted as in :func:`load_image`."""
    array = np.array(_to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """A float (3,H,W) tensor in [0,1] as an 8-bit RGB image (values outside [0,1] are clipped)."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (3,H,W) image tensor, got shape {tuple(tensor.shape)}")
    array = tensor.detach().to("cpu", torch.float32).clamp(0, 1).mul(255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


def load_image_tensor(path: str | os.PathLike[str], **kwargs) -> torch.Tensor:
    """:func:`load_image` as a float32 (3,H,W) tensor in [0,1]; keyword arguments go to :func:`load_image`."""
    return pil_to_tensor(load_image(path, **kwargs))


def _mask_from_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _error(path, f"not a readable .npy array ({exc})", "save the mask with numpy.save") from exc
    if array.ndim == 3:
        channel_axis = 0 if array.shape[0] <= 4 < array.shape[-1] else -1
        return np.any(array != 0, axis=channel_axis)
    if array.ndim != 2:
        raise _error(path, f"mask array has shape {array.shape}", "save a 2-d (H,W) or 3-d (H,W,C) array")
    return array != 0


def _mask_from_image(image: Image.Image) -> np.ndarray:
    if image.mode in ("P", "PA"):
        mask = np.asarray(image.getchannel(0)) != 0
        if image.mode == "PA":
            mask &= np.asarray(image.getchannel("A")) > 127
        return mask
    if image.mode == "1":
        return np.array(image, dtype=bool)
    if image.mode in _HIGH_DEPTH_MODES:
        raw = np.asarray(image)
        if np.isin(raw, (0, 1)).all():
            return raw == 1
        return _unit_range(image) > 0.5
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    has_alpha = image.mode in ("LA", "RGBA")
    colour = array[:, :, :-1] if has_alpha else array
    if colour.shape[2] == 1 and np.isin(colour, (0, 1)).all():
        mask = colour[:, :, 0] == 1
    else:
        mask = np.any(colour > 127, axis=2)
    if has_alpha:
        mask &= array[:, :, -1] > 127
    return mask


def load_mask(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load a foreground mask as a bool (H,W) array.

    Image files (PNG, JPEG, BMP, ...): 8-bit gray pixels > 127 are foreground, except that a gray mask whose
    values are all 0 or 1 is read as a 0/1 mask; RGB(A) pixels are foreground when any colour channel is
    > 127 (and, with alpha, the pixel is not transparent, alpha > 127); palette masks: index != 0;
    16-bit and float masks: above half of their range. ``.npy`` arrays: nonzero is foreground, 3-d arrays
    (H,W,C) or (C,H,W) are reduced over the channel axis.

    Raises:
        ImageLoadError: the file is missing, empty, unreadable, or the array has the wrong shape.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        _check_file(path)
        return _mask_from_npy(path)
    return _mask_from_image(_open(path, max_pixels))


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write an image (PIL image or float (3,H,W) tensor in [0,1]) atomically; the format follows the suffix."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ConfigError(f"cannot save image to '{path}': unknown file extension '{path.suffix}'; use .png or .jpg")
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    if image_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = _to_rgb(image)
    with atomic_path(path) as tmp:
        image.save(tmp, format=image_format)
    return path


def path_within(folder: str | os.PathLike[str], name: str, listed_in: str | os.PathLike[str]) -> Path:
    """``folder / name`` for a file ``name`` read from the data file ``listed_in``, if it stays inside ``folder``
    once resolved (no absolute path, no ``..``, no link leading out); else a one-line error: a data or maps file
    may only name files in its own folder."""
    folder = Path(folder)
    target = folder / name
    if Path(name).is_absolute() or not target.resolve().is_relative_to(folder.resolve()):
        raise DatasetLayoutError(f"'{listed_in}' names '{name}', which lies outside '{folder}': refused (a data "
                                 "file may only name files in its own folder); write the file again")  # fmt: skip
    return target
