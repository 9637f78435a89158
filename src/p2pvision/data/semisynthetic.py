"""The built-in semi-synthetic data set: real digits pasted onto crops of real photos (BAM-style).

One image set, two labelings: the *object* task (label = digit class; the relevant region is the digit's
pixel mask) and the *scene* task (label = photo the background was cropped from; the digit is an irrelevant
distractor). Object and scene classes are drawn independently and balanced, so neither predicts the other.

Splits are disjoint by construction: each digit instance belongs to one split only, and each photo is cut
into three non-overlapping zones (train, validation, test) from which that split's crops are taken.
Objects are large, as in BAM: the square around a digit has a side of 1/sqrt(3) to 1/sqrt(2) of the image
side, and strokes are thickened so that the mean object area share is 10-25%. With ``objects="fashion"``
the objects are Fashion-MNIST items (filled shapes, tinted with their own texture) where those files exist.

Generated once per parameter set into the cache directory (``p2pvision.cache.cache_dir()``) as ``.npy``
arrays that later runs memory-map; changing any parameter (or the generator version) makes a new entry.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.lib.format import open_memmap
from scipy.ndimage import binary_fill_holes
from tqdm.auto import tqdm

from p2pvision.cache import cache_dir, params_key, write_json
from p2pvision.data.sources import (
    OBJECT_SOURCES,
    ObjectSource,
    ScenePhoto,
    scene_photos,
)
from p2pvision.errors import ConfigError

GENERATOR_VERSION = 2
Split = Literal["train", "val", "test"]
Task = Literal["object", "scene"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
TASKS: tuple[Task, ...] = ("object", "scene")
_INSTANCE_FRACTIONS = (0.7, 0.15, 0.15)  # share of each digit class's instances per split
_TRAIN_ZONE = 0.7  # share of each photo's long side reserved for training crops
_CROP_RANGE = (0.6, 1.0)  # crop side relative to the smallest zone's short side


@dataclass(frozen=True)
class SemiSyntheticConfig:
    """Parameters of the built-in data set. Every field is part of the cache key."""

    image_size: int = 64
    n_train: int = 8000
    n_val: int = 1000
    n_test: int = 1000
    object_scale: tuple[float, float] = (1 / math.sqrt(3), 1 / math.sqrt(2))
    thicken: float = 0.035  # stroke dilation radius relative to the object's side (stroke sources only)
    objects: str = "mnist"  # object source: "mnist" (bundled digits) or "fashion" (Fashion-MNIST, if installed)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 1024:
            raise ConfigError(f"image_size={self.image_size} is out of range: use 16..1024 pixels (default 64)")
        for split in SPLITS:
            if getattr(self, f"n_{split}") < 0:
                raise ConfigError(f"n_{split}={getattr(self, f'n_{split}')} must be >= 0")
        low, high = self.object_scale
        if not 0.1 <= low <= high <= 1.0:
            raise ConfigError(
                f"object_scale={self.object_scale} is invalid: need 0.1 <= low <= high <= 1 (object side / image side)"
            )
        if self.objects not in OBJECT_SOURCES:
            raise ConfigError(f"objects='{self.objects}' is unknown: use one of {', '.join(OBJECT_SOURCES)}")
        if not 0 <= self.thicken <= 0.2:
            raise ConfigError(f"thicken={self.thicken} is out of range: use 0..0.2 (default 0.035)")

    def count(self, split: Split) -> int:
        return int(getattr(self, f"n_{split}"))

    def key(self) -> str:
        return params_key({"version": GENERATOR_VERSION, **asdict(self)})


@dataclass
class SplitArrays:
    """The arrays of one split (memory-mapped when loaded from the cache)."""

    images: np.ndarray  # (N,H,W,3) uint8
    object_masks: np.ndarray  # (N,H,W) bool
    object_labels: np.ndarray  # (N,) int64
    scene_labels: np.ndarray  # (N,) int64
    object_instances: np.ndarray  # (N,) int64, index into the digit source
    scene_boxes: np.ndarray  # (N,5) int64: photo index, y0, x0, y1, x1 in photo pixels


@dataclass
class SemiSyntheticData:
    """A generated data set on disk: its folder, parameters, class names and per-split statistics."""

    root: Path
    config: SemiSyntheticConfig
    object_classes: tuple[str, ...]
    scene_classes: tuple[str, ...]
    stats: dict[str, dict[str, float]] = field(default_factory=dict)

    def split(self, split: Split) -> SplitArrays:
        names = SplitArrays.__dataclass_fields__
        return SplitArrays(**{name: np.load(self.root / f"{split}_{name}.npy", mmap_mode="r") for name in names})

    def object_area_share(self, split: Split) -> float:
        """Mean share of the image covered by the object: the chance level of localisation precision."""
        return self.stats[split]["object_area_share"]


def _instance_pools(source: ObjectSource, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Split each class's instances into disjoint train/val/test pools."""
    pools: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for cls in range(len(source.classes)):
        members = rng.permutation(np.flatnonzero(source.labels == cls))
        cuts = np.cumsum([int(round(f * len(members))) for f in _INSTANCE_FRACTIONS[:-1]])
        for split, part in zip(SPLITS, np.split(members, cuts)):
            if len(part) == 0:
                raise ConfigError(
                    f"object class '{source.classes[cls]}' has too few instances ({len(members)}) to give the "
                    f"{split} split its own: the object source needs at least 3 per class"
                )
            pools[split].append(part)
    return pools


def _zones(box: tuple[int, int, int, int]) -> dict[str, tuple[int, int, int, int]]:
    """Cut a photo's usable box into non-overlapping train / val / test zones (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    height, width = y1 - y0, x1 - x0
    if width >= height:
        cut = x0 + int(width * _TRAIN_ZONE)
        mid = y0 + height // 2
        return {"train": (y0, x0, y1, cut), "val": (y0, cut, mid, x1), "test": (mid, cut, y1, x1)}
    cut = y0 + int(height * _TRAIN_ZONE)
    mid = x0 + width // 2
    return {"train": (y0, x0, cut, x1), "val": (cut, x0, y1, mid), "test": (cut, mid, y1, x1)}


def _square_object(item: np.ndarray, threshold: int) -> np.ndarray:
    """Crop an object image to its pixels above ``threshold`` and pad it to a square (object centred)."""
    ys, xs = np.nonzero(item > threshold)
    crop = item[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    side = max(crop.shape)
    out = np.zeros((side, side), np.uint8)
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    out[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return out


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    hsv = np.array([[[rng.integers(0, 180), rng.integers(150, 256), rng.integers(170, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def _balanced_labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes)


def _generate_split(
    config: SemiSyntheticConfig,
    split: Split,
    source: ObjectSource,
    pools: list[np.ndarray],
    photos: list[ScenePhoto],
    out: SplitArrays,
    progress: Callable[[int], None],
) -> None:
    size = config.image_size
    rng = np.random.default_rng([config.seed, SPLITS.index(split), GENERATOR_VERSION])
    n = config.count(split)
    out.object_labels[:] = _balanced_labels(n, len(source.classes), rng)
    out.scene_labels[:] = _balanced_labels(n, len(photos), rng)
    zones = [_zones(photo.box) for photo in photos]
    threshold = 8 if source.filled else 127
    crop_base = [min(min(z[2] - z[0], z[3] - z[1]) for z in zone.values()) for zone in zones]
    squares = {}
    for i in range(n):
        obj_cls, scene_cls = int(out.object_labels[i]), int(out.scene_labels[i])
        # Scene: a random square crop inside this split's zone of the photo, resized to the image size.
        y0, x0, y1, x1 = zones[scene_cls][split]
        crop = int(crop_base[scene_cls] * rng.uniform(*_CROP_RANGE))
        top, left = int(rng.integers(y0, y1 - crop + 1)), int(rng.integers(x0, x1 - crop + 1))
        scene = photos[scene_cls].image[top : top + crop, left : left + crop]
        scene = cv2.resize(scene, (size, size), interpolation=cv2.INTER_AREA if crop > size else cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            scene = scene[:, ::-1]
        # Object: a digit instance of this split, scaled, thickened, coloured, pasted at a random place.
        instance = int(rng.choice(pools[obj_cls]))
        if instance not in squares:
            squares[instance] = _square_object(source.images[instance], threshold)
        side = max(4, int(round(size * rng.uniform(*config.object_scale))))
        shade = cv2.resize(squares[instance], (side, side), interpolation=cv2.INTER_LINEAR)
        glyph = shade > threshold
        if source.filled:
            glyph = binary_fill_holes(glyph)
        elif (radius := int(round(config.thicken * side))) > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            glyph = cv2.dilate(glyph.astype(np.uint8), kernel).astype(bool)
        oy, ox = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
        mask = np.zeros((size, size), bool)
        mask[oy : oy + side, ox : ox + side] = glyph
        image = np.ascontiguousarray(scene)
        colour = _random_colour(rng)
        if source.filled:  # keep the item's own texture, tinted
            tint = 0.35 + 0.65 * shade[glyph].astype(np.float32)[:, None] / 255
            image[mask] = np.clip(tint * colour, 0, 255).astype(np.uint8)
        else:
            image[mask] = colour
        out.images[i] = image
        out.object_masks[i] = mask
        out.object_instances[i] = instance
        out.scene_boxes[i] = (scene_cls, top, left, top + crop, left + crop)
        progress(1)


def _load_meta(root: Path, config: SemiSyntheticConfig) -> SemiSyntheticData | None:
    try:
        meta = json.loads((root / "meta.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if meta.get("config") != json.loads(json.dumps(asdict(config))):
        return None
    return SemiSyntheticData(root, config, tuple(meta["object_classes"]), tuple(meta["scene_classes"]), meta["stats"])


def build_semisynthetic(
    config: SemiSyntheticConfig | None = None, *, root: str | os.PathLike[str] | None = None, progress: bool = True
) -> SemiSyntheticData:
    """Return the data set for ``config``, generating it into the cache on first use.

    ``root`` overrides the parent folder (default: ``<cache>/semisynthetic``). Generation writes into a
    temporary folder that is renamed into place when complete, so an interrupted run leaves no partial entry.
    """
    config = config or SemiSyntheticConfig()
    parent = Path(root) if root is not None else cache_dir() / "semisynthetic"
    final = parent / f"{config.image_size}px-{config.key()}"
    cached = _load_meta(final, config)
    if cached is not None:
        return cached
    parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    source, photos = OBJECT_SOURCES[config.objects](), scene_photos()
    pools = _instance_pools(source, np.random.default_rng([config.seed, GENERATOR_VERSION]))
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
    stats: dict[str, dict[str, float]] = {}
    try:
        total = sum(config.count(s) for s in SPLITS)
        with tqdm(total=total, desc="generating semi-synthetic images", unit="img", disable=not progress) as bar:
            for split in SPLITS:
                arrays = _allocate(tmp, split, config)
                _generate_split(config, split, source, pools[split], photos, arrays, bar.update)
                shares = arrays.object_masks.reshape(len(arrays.object_masks), -1).mean(axis=1)
                stats[split] = {
                    "images": float(len(shares)),
                    "object_area_share": float(shares.mean()) if len(shares) else 0.0,
                    "object_area_share_std": float(shares.std()) if len(shares) else 0.0,
                }
                for array in vars(arrays).values():
                    array.flush()
                del arrays
        meta = {
            "config": asdict(config),
            "generator_version": GENERATOR_VERSION,
            "object_classes": list(source.classes),
            "scene_classes": [photo.name for photo in photos],
            "stats": stats,
            "seconds": round(time.perf_counter() - start, 3),
        }
        write_json(tmp / "meta.json", meta)
        if final.exists():  # a stale or foreign entry with our name: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SemiSyntheticData(final, config, source.classes, tuple(p.name for p in photos), stats)


def _allocate(folder: Path, split: Split, config: SemiSyntheticConfig) -> SplitArrays:
    n, size = config.count(split), config.image_size
    shapes = {
        "images": ((n, size, size, 3), np.uint8),
        "object_masks": ((n, size, size), np.bool_),
        "object_labels": ((n,), np.int64),
        "scene_labels": ((n,), np.int64),
        "object_instances": ((n,), np.int64),
        "scene_boxes": ((n, 5), np.int64),
    }
    return SplitArrays(
        **{
            name: open_memmap(folder / f"{split}_{name}.npy", "w+", dtype, shape)
            for name, (shape, dtype) in shapes.items()
        }
    )
