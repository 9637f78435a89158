"""Tests for p2pvision.io: every conversion case and every bad-input case, on files built in tmp_path."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, JpegImagePlugin

from p2pvision.errors import ConfigError, ImageLoadError
from p2pvision.io import (
    load_image,
    load_image_tensor,
    load_mask,
    pil_to_tensor,
    save_image,
    tensor_to_pil,
)


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _assert_one_line_error(exc_info: pytest.ExceptionInfo, path: Path, *causes: str) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "\r" not in message
    assert path.name in message
    for cause in causes:
        assert cause in message.lower(), message
    return message


# --- conversions ---------------------------------------------------------------------------------------------


def test_rgb_round_trip(tmp_path: Path) -> None:
    pixels = _noise(9, 13)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    image = load_image(tmp_path / "rgb.png")
    assert image.mode == "RGB" and image.size == (13, 9)
    np.testing.assert_array_equal(np.asarray(image), pixels)


def test_grayscale_becomes_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 6), 77).save(tmp_path / "gray.png")
    image = load_image(tmp_path / "gray.png")
    assert image.mode == "RGB" and image.size == (8, 6)
    assert image.getpixel((3, 2)) == (77, 77, 77)


def test_one_bit_becomes_rgb(tmp_path: Path) -> None:
    bits = Image.new("1", (8, 8), 0)
    bits.putpixel((2, 3), 1)
    bits.save(tmp_path / "bits.png")
    image = load_image(tmp_path / "bits.png")
    assert image.getpixel((2, 3)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 0)


def test_gray_alpha_composited_over_background(tmp_path: Path) -> None:
    Image.new("LA", (8, 8), (0, 0)).save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png", background=(10, 20, 30))
    assert image.mode == "RGB"
    assert image.getpixel((4, 4)) == (10, 20, 30)


def test_rgba_composited_with_known_colour(tmp_path: Path) -> None:
    # Half-transparent pure red over the default white background -> (255, ~128, ~128).
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(tmp_path / "rgba.png")
    red, green, blue = load_image(tmp_path / "rgba.png").getpixel((1, 1))
    assert red == 255
    assert abs(green - 127) <= 1 and abs(blue - 127) <= 1
    black_bg = load_image(tmp_path / "rgba.png", background=(0, 0, 0)).getpixel((1, 1))
    assert abs(black_bg[0] - 128) <= 1 and black_bg[1:] == (0, 0)


def test_palette_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 200, 100] + [0] * 762)
    palette.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").getpixel((0, 0)) == (0, 200, 100)


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.save(tmp_path / "pt.png", transparency=1)
    image = load_image(tmp_path / "pt.png", background=(0, 255, 0))
    assert image.getpixel((0, 0)) == (0, 0, 255)  # opaque index 0
    assert image.getpixel((5, 5)) == (0, 255, 0)  # transparent index 1 shows the background


def test_sixteen_bit_png_scaled_by_bit_range(tmp_path: Path) -> None:
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = load_image(tmp_path / "deep.png")
    row = np.asarray(image)[0, :, 0]
    assert row[0] == 0 and row[2] == 255
    assert abs(int(row[1]) - 128) <= 1
    assert row[3] == 4  # 1000/65535*255, not clipped to 255


def test_sixteen_bit_big_endian(tmp_path: Path) -> None:
    values = np.full((4, 4), 65535, dtype=">u2")
    Image.frombytes("I;16B", (4, 4), values.tobytes()).save(tmp_path / "big.tiff")
    assert load_image(tmp_path / "big.tiff").getpixel((0, 0)) == (255, 255, 255)


def test_float_image_in_unit_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0, 0.25]], dtype=np.float32).repeat(2, axis=0)
    Image.fromarray(values).save(tmp_path / "float.tiff")
    row = np.asarray(load_image(tmp_path / "float.tiff"))[0, :, 0]
    np.testing.assert_array_equal(row, [0, 128, 255, 64])


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    red, green, blue = load_image(tmp_path / "cmyk.jpg").getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # A 20x10 image with a red left half; orientation 6 means "rotate 90 degrees clockwise to display".
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    image = load_image(tmp_path / "rotated.png")
    assert image.size == (10, 20)
    assert image.getpixel((5, 2)) == (255, 0, 0)  # the left half is now the top half
    assert image.getpixel((5, 17)) == (0, 0, 0)


def test_large_png_downscaled_to_max_side(tmp_path: Path) -> None:
    Image.new("L", (6000, 5000), 200).save(tmp_path / "large.png")
    image = load_image(tmp_path / "large.png")
    assert image.size == (4096, 3413)
    assert image.getpixel((100, 100)) == (200, 200, 200)
    assert load_image(tmp_path / "large.png", max_side=None).size == (6000, 5000)


def test_large_jpeg_downscaled_with_draft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (3000, 2000), (30, 60, 90)).save(tmp_path / "large.jpg")
    drafted_sizes = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        result = real_draft(self, mode, size)
        drafted_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    image = load_image(tmp_path / "large.jpg", max_side=500)
    assert drafted_sizes == [(750, 500)]  # decoded at 1/4 scale, then resized
    assert image.size == (500, 333)
    assert all(abs(a - b) <= 3 for a, b in zip(image.getpixel((250, 160)), (30, 60, 90)))


def test_tensor_helpers_round_trip(tmp_path: Path) -> None:
    pixels = _noise(5, 7)
    Image.fromarray(pixels).save(tmp_path / "t.png")
    tensor = load_image_tensor(tmp_path / "t.png")
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 5, 7)
    assert 0.0 <= tensor.min() and tensor.max() <= 1.0
    torch.testing.assert_close(tensor, torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(tensor)), pixels)
    assert pil_to_tensor(Image.new("L", (2, 2), 255)).eq(1.0).all()


def test_tensor_to_pil_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(3,H,W\)"):
        tensor_to_pil(torch.zeros(1, 3, 4, 4))


def test_save_image_writes_atomically(tmp_path: Path) -> None:
    tensor = torch.zeros(3, 4, 6)
    tensor[0] = 1.0
    target = tmp_path / "out" / "saved.png"
    assert save_image(tensor, target) == target
    assert load_image(target).getpixel((0, 0)) == (255, 0, 0)
    save_image(Image.new("RGBA", (4, 4), (0, 0, 255, 255)), tmp_path / "out" / "saved.jpg")
    assert sorted(p.name for p in target.parent.iterdir()) == ["saved.jpg", "saved.png"]  # no temporaries left
    with pytest.raises(ConfigError, match="unknown file extension"):
        save_image(tensor, tmp_path / "saved.xyz")


def test_atomic_writes_get_the_usual_file_permissions(tmp_path: Path) -> None:
    """Temporary files are created 0600; the final file must follow the umask like any other output."""
    from p2pvision.cache import _UMASK, write_json

    write_json(tmp_path / "a.json", {"a": 1})
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~_UMASK


# --- bad inputs ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "does not exist", "check the path")


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "empty (0 bytes)", "re-download")


def test_text_file_with_image_suffix(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\nsecond line\n")
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "not a recognised image format")


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage\xff" * 30)
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "corrupt")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_not_padded(tmp_path: Path, suffix: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    full = tmp_path / f"full{suffix}"
    Image.fromarray(_noise(64, 64)).save(full)
    data = full.read_bytes()
    path = tmp_path / f"half{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "truncated")


def test_pixel_limit_from_the_call(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path, max_pixels=5000)
    _assert_one_line_error(exc_info, path, "100x100", "max_pixels=5000", "decompression bomb")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_header_level_decompression_bomb_refused_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A valid 1-bit 20000x20000 PNG: 400 million pixels in about 50 kB.
    side = 20000
    row = b"\x00" + bytes(side // 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )
    assert path.stat().st_size < 200_000

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageLoadError) as exc_info:
        load_image(path)
    _assert_one_line_error(exc_info, path, "decompression bomb")
    with pytest.raises(ImageLoadError):
        load_mask(path)


# --- masks ---------------------------------------------------------------------------------------------------


def test_mask_from_gray_png(tmp_path: Path) -> None:
    values = np.zeros((6, 8), dtype=np.uint8)
    values[1, 2] = 128
    values[3, 4] = 127
    Image.fromarray(values).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.shape == (6, 8)
    assert mask[1, 2] and not mask[3, 4] and mask.sum() == 1


def test_mask_with_zero_one_values(tmp_path: Path) -> None:
    values = np.zeros((4, 4), dtype=np.uint8)
    values[0, 1] = 1
    Image.fromarray(values).save(tmp_path / "01.png")
    mask = load_mask(tmp_path / "01.png")
    assert mask[0, 1] and mask.sum() == 1


def test_mask_from_rgb_and_rgba(tmp_path: Path) -> None:
    values = np.zeros((4, 4, 4), dtype=np.uint8)
    values[..., 3] = 255
    values[0, 0, 2] = 200  # blue only: foreground
    values[1, 1, :3] = 255
    values[1, 1, 3] = 0  # white but transparent: background
    Image.fromarray(values, mode="RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(values[..., :3]).save(tmp_path / "rgb.bmp")
    rgba = load_mask(tmp_path / "rgba.png")
    assert rgba[0, 0] and not rgba[1, 1] and rgba.sum() == 1
    rgb = load_mask(tmp_path / "rgb.bmp")
    assert rgb[0, 0] and rgb[1, 1] and rgb.sum() == 2


def test_mask_from_palette_and_jpeg(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    palette.putpixel((2, 1), 1)  # index 1 is black, still foreground
    palette.save(tmp_path / "p.png")
    assert load_mask(tmp_path / "p.png").nonzero() == (np.array([1]), np.array([2]))
    gray = np.zeros((16, 16), dtype=np.uint8)
    gray[:, 8:] = 255
    Image.fromarray(gray).save(tmp_path / "m.jpg", quality=95)
    jpeg = load_mask(tmp_path / "m.jpg")
    assert jpeg[:, 10:].all() and not jpeg[:, :6].any()


def test_mask_from_npy(tmp_path: Path) -> None:
    flat = np.zeros((5, 6), dtype=np.float32)
    flat[2, 3] = 0.1
    np.save(tmp_path / "flat.npy", flat)
    assert load_mask(tmp_path / "flat.npy").nonzero() == (np.array([2]), np.array([3]))
    last = np.zeros((5, 6, 3), dtype=np.uint8)
    last[4, 5, 1] = 1
    np.save(tmp_path / "last.npy", last)
    assert load_mask(tmp_path / "last.npy").nonzero() == (np.array([4]), np.array([5]))
    first = np.zeros((1, 5, 6), dtype=bool)
    first[0, 0, 0] = True
    np.save(tmp_path / "first.npy", first)
    mask = load_mask(tmp_path / "first.npy")
    assert mask.shape == (5, 6) and mask[0, 0] and mask.sum() == 1


def test_mask_errors_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "vector.npy", np.zeros(5))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    (tmp_path / "empty.npy").touch()
    for name, cause in [
        ("vector.npy", "shape"),
        ("bad.npy", "not a readable .npy"),
        ("empty.npy", "empty"),
        ("missing.png", "does not exist"),
    ]:
        with pytest.raises(ImageLoadError) as exc_info:
            load_mask(tmp_path / name)
        _assert_one_line_error(exc_info, tmp_path / name, cause)


def test_unreadable_paths_are_named_for_what_they_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loop_a, loop_b = tmp_path / "a.png", tmp_path / "b.png"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    broken = tmp_path / "broken.png"
    broken.symlink_to(tmp_path / "gone.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path, cause in ((loop_a, "symbolic links form a loop"), (broken, "symbolic link to a missing file"),
                        (fifo, "not a regular file")):  # fmt: skip
        with pytest.raises(ImageLoadError, match=cause):
            load_image(path)
    image = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(image)
    monkeypatch.setattr(os, "access", lambda *_args, **_kwargs: False)  # root reads everything: simulate a user
    with pytest.raises(ImageLoadError, match="permission denied; make the file readable"):
        load_image(image)
