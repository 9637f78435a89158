"""Data sets that users have in local folders: generic class folders, COCO-10 style masked folders, BAM.

Every data set here returns dict samples ``{"image": float (3,H,W) in [0,1], "label": int, "index": int}``,
plus ``"mask"`` (bool (H,W), resized with nearest neighbour to the image size when it is a scaled copy of it;
a mask of another shape is an error) when the data
set has masks. Each has ``classes``, ``has_masks`` and ``len()``; ``transform`` (a joint transform on the
sample dict) is applied last. Images are read with :func:`p2pvision.io.load_image`, masks with
:func:`p2pvision.io.load_mask`. A folder that does not have the expected layout raises
:class:`~p2pvision.errors.DatasetLayoutError` with one line saying what was expected where.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from p2pvision.data.safe_pickle import load_npy
from p2pvision.errors import ConfigError, DatasetLayoutError
from p2pvision.io import load_image, load_mask, path_within, pil_to_tensor

__all__ = [
    "BAM_OBJECT_CLASSES",
    "BAM_SCENE_CLASSES",
    "COCO10_CLASSES",
    "IMAGE_EXTENSIONS",
    "BamDataset",
    "FileListDataset",
    "ImageFolderDataset",
    "MaskedImageDataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MASK_EXTENSIONS = (".png", ".npy")
COCO10_CLASSES = ("bed", "car", "cat", "clock", "dog", "person", "sink", "train", "tv", "vase")

Transform = Callable[[dict], dict]


def image_files(folder: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder`` (suffix matched case-insensitively, hidden files skipped), sorted."""
    suffixes = {ext.lower() for ext in extensions}
    with os.scandir(folder) as entries:
        names = [
            entry.name
            for entry in entries
            if not entry.name.startswith(".") and entry.is_file() and Path(entry.name).suffix.lower() in suffixes
        ]
    return [folder / name for name in sorted(names)]


def subfolders(folder: Path) -> list[str]:
    """Names of the non-hidden folders directly inside ``folder``, sorted."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))


def require_folder(folder: Path, expected: str) -> None:
    """Raise DatasetLayoutError unless ``folder`` is an existing directory; ``expected`` describes the layout."""
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise DatasetLayoutError(f"'{folder}' {problem}: expected {expected}")


def files_by_class(folder: Path, classes: Sequence[str], layout: str, kind: str) -> tuple[list[Path], list[int]]:
    """Image files in ``folder/<class>/`` labelled by the position of <class> in ``classes``.

    A folder that is not a known class, or no image at all, is a layout error; ``kind`` names the data set's
    classes in that message (e.g. "a BAM obj class") and ``layout`` describes what was expected.
    """
    files: list[Path] = []
    labels: list[int] = []
    for name in subfolders(folder):
        if name not in classes:
            raise DatasetLayoutError(
                f"'{folder / name}' is not {kind}: expected {layout}, "
                f"the class folder being one of {', '.join(classes)}"
            )
        found = image_files(folder / name)
        if not found:
            raise DatasetLayoutError(f"class folder '{folder / name}' holds no images: add its images or remove the "
                                     "folder (a class without images cannot be learned or evaluated)")  # fmt: skip
        files += found
        labels += [list(classes).index(name)] * len(found)
    if not files:
        raise DatasetLayoutError(f"'{folder}' holds no images: expected {layout}")
    return files, labels


def fit_mask(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A bool (H,W) mask as a tensor, resized with nearest neighbour to ``size`` = (width, height) if needed."""
    width, height = size
    if mask.shape != (height, width):
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))


class FileListDataset(Dataset):
    """Image files with labels and, optionally, one mask file per image; the base of the folder loaders."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        classes: Sequence[str],
        mask_files: Sequence[Path] | None = None,
        transform: Transform | None = None,
    ) -> None:
        if len(files) != len(labels) or (mask_files is not None and len(mask_files) != len(files)):
            raise ValueError("files, labels and mask_files must have the same length")
        self.files = list(files)
        self.labels = [int(label) for label in labels]
        self.classes = list(classes)
        self.mask_files = list(mask_files) if mask_files is not None else None
        self.has_masks = mask_files is not None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    @property
    def samples(self) -> list[tuple[Path, int]]:
        """(image file, label) pairs as in torchvision's ImageFolder; region caching keys on these files."""
        return list(zip(self.files, self.labels))

    def masks(self, index: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The mask entries of sample ``index`` for an image of ``size`` (width, height); needs ``has_masks``."""
        assert self.mask_files is not None
        mask = load_mask(self.mask_files[index])
        width, height = size
        if abs(mask.shape[1] / mask.shape[0] - width / height) > 0.02 * width / height:
            raise DatasetLayoutError(
                f"mask '{self.mask_files[index]}' is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"'{self.files[index]}' is {width}x{height}: a mask must have its image's size or shape (it would "
                "be stretched); export the masks again"
            )
        return {"mask": fit_mask(mask, size)}

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a data set of {len(self)} images")
        index %= len(self)
        image = load_image(self.files[index])
        sample = {"image": pil_to_tensor(image), "label": self.labels[index], "index": index}
        if self.has_masks:
            sample.update(self.masks(index, image.size))
        return self.transform(sample) if self.transform is not None else sample


def _masks_by_stem(folder: Path) -> dict[str, Path]:
    """Mask files in ``folder`` by file stem; a PNG wins over an NPY of the same stem."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in image_files(folder, MASK_EXTENSIONS):
        if path.suffix.lower() == ".png" or path.stem not in found:
            found[path.stem] = path
    return found


class ImageFolderDataset(FileListDataset):
    """Images in class folders, ``root/<class>/<image>``, with optional masks ``masks_root/<class>/<stem>.png``.

    Classes are the sorted folder names, or ``classes`` if given: then labels follow that order, a class may
    lack a folder, and a folder that is not a listed class is an error. Pass the same list for every split so
    that labels agree even when a split lacks a class. Masks may also be ``.npy`` arrays; with ``masks_root``
    every image needs one. Files whose suffix is not in ``extensions`` are ignored.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        masks_root: str | os.PathLike[str] | None = None,
        transform: Transform | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        layout = f"{self.root}/<class>/<image files>"
        require_folder(self.root, layout)
        folders = subfolders(self.root)
        if classes is None:
            if not folders:
                raise DatasetLayoutError(f"'{self.root}' has no class folders: expected {layout}")
            classes = folders
        else:
            unknown = [name for name in folders if name not in classes]
            if unknown:
                raise DatasetLayoutError(
                    f"'{self.root / unknown[0]}' is not one of the given classes: expected {layout} with <class> one "
                    f"of {', '.join(classes)}"
                )
        extensions = tuple(extensions)
        files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(classes):
            found = image_files(self.root / name, extensions) if name in folders else []
            if name in folders and not found:
                raise DatasetLayoutError(
                    f"class folder '{self.root / name}' holds no images ({', '.join(extensions)}): add its images or "
                    "remove the folder (a class without images cannot be learned or evaluated)"
                )
            files += found
            labels += [label] * len(found)
        if not files:
            raise DatasetLayoutError(
                f"the class folders of '{self.root}' hold no image files ({', '.join(extensions)}): expected {layout}"
            )
        mask_files = None
        if masks_root is not None:
            self.masks_root = Path(masks_root)
            require_folder(self.masks_root, f"{self.masks_root}/<class>/<image stem>.png or .npy")
            mask_files = self._match_masks(files, [classes[label] for label in labels])
        super().__init__(files, labels, classes, mask_files, transform)

    def _match_masks(self, files: list[Path], class_names: list[str]) -> list[Path]:
        by_class: dict[str, dict[str, Path]] = {}
        masks = []
        for file, name in zip(files, class_names):
            if name not in by_class:
                by_class[name] = _masks_by_stem(self.masks_root / name)
            mask = by_class[name].get(file.stem)
            if mask is None:
                expected = self.masks_root / name / f"{file.stem}.png"
                raise DatasetLayoutError(f"image '{file}' has no mask: expected '{expected}' (or .npy)")
            masks.append(mask)
        return masks


class MaskedImageDataset(ImageFolderDataset):
    """One split of a class-folder data set with a mask for every image, such as COCO-10.

    Images are ``root/<split>/<class>/<image>``; masks (``<stem>.png`` or ``<stem>.npy``) are in either

    - ``root/<split>_masks/<class>/`` or
    - ``root/masks/<split>/<class>/`` (the layout :func:`p2pvision.data.export.export_image_folder` writes);

    the first that exists is used. For COCO-10 pass ``classes=COCO10_CLASSES`` (bed car cat clock dog person sink
    train tv vase) so that labels are fixed whatever folders a split has.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Transform | None = None,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        classes: Sequence[str] | None = None,
    ) -> None:
        root = Path(root)
        require_folder(root / split, f"{root}/{split}/<class>/<image files> (split '{split}')")
        candidates = (root / f"{split}_masks", root / "masks" / split)
        masks_root = next((folder for folder in candidates if folder.is_dir()), None)
        if masks_root is None:
            raise DatasetLayoutError(
                f"no masks for split '{split}' in '{root}': expected {candidates[0]}/<class>/<image stem>.png "
                f"or {candidates[1]}/<class>/<image stem>.png"
            )
        self.split = split
        super().__init__(root / split, masks_root, transform, extensions, classes)


BAM_OBJECT_CLASSES = (
    "backpack", "bird", "dog", "elephant", "kite", "pizza", "stop_sign", "toilet", "truck", "zebra",
)  # fmt: skip
BAM_SCENE_CLASSES = (
    "bamboo_forest", "bedroom", "bowling_alley", "bus_interior", "cockpit",
    "corn_field", "laundromat", "runway", "ski_slope", "track",
)  # fmt: skip
_BAM_VAL_NUMBERS = range(900, 1000)  # per object class, images 900-999 form the validation split
_BAM_NAME = re.compile(r"^(?P<object>[a-z_]+)-(?P<scene>[a-z_]+)-(?P<number>\d{4})$")


class BamDataset(FileListDataset):
    """BAM (Yang & Kim 2019): COCO objects pasted onto MiniPlaces scenes, labelled by object or by scene.

    Reads the folder that ``scripts/construct_bim_dataset.py`` of google-research-datasets/bam writes (its
    ``data`` folder is ``root``):

    - ``root/<task>/train/<class>/<object>-<scene>-<NNNN>.jpg`` (``task`` is ``obj`` or ``scene``);
    - ``root/<task>/val/<object>-<scene>-<NNNN>.jpg`` (flat) with ``root/<task>/val.txt`` lines
      ``<file> <label>``;
    - for validation images, the object's box ``root/<task>/val_loc.txt`` (``<file> y0,x0,y1,x1``) and
      ``root/<task>/val_mask``: a NumPy object array of 1,000 cropped COCO object masks, 100 per object class
      (classes in sorted order), entry ``100*k + NNNN-900`` for object class ``k``.

    Validation samples get masks when ``val_loc.txt`` and ``val_mask`` are present: the cropped mask is resized
    (nearest neighbour) to its box and placed there, which is how the script pasted the object. As in the
    built-in data set, ``"mask"`` is the region relevant to the task: the object for ``obj``, everything but
    the object for ``scene`` (:meth:`object_mask` gives the object itself). The release has only boxes for
    training images, so the training split has no masks. ``val_mask`` stores its object array as a pickle: it is
    read with a restricted unpickler that loads NumPy arrays only, never code. This layout follows the
    construction script; it has not been checked against a copy built by it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        task: str = "obj",
        split: str = "train",
        transform: Transform | None = None,
    ) -> None:
        if task not in ("obj", "scene"):
            raise ConfigError(f"BAM task '{task}' is unknown: use 'obj' or 'scene'")
        if split not in ("train", "val"):
            raise ConfigError(f"BAM split '{split}' is unknown: use 'train' or 'val'")
        self.root, self.task, self.split = Path(root), task, split
        self.task_root = self.root / task
        classes = BAM_OBJECT_CLASSES if task == "obj" else BAM_SCENE_CLASSES
        if split == "train":
            files, labels = self._train_files(classes)
        else:
            files, labels = self._val_files(classes)
        super().__init__(files, labels, classes, None, transform)
        self._boxes: dict[str, tuple[int, int, int, int]] = {}
        self._object_masks: np.ndarray | None = None
        if split == "val" and (self.task_root / "val_loc.txt").is_file():
            candidates = (self.task_root / "val_mask", self.task_root / "val_mask.npy")
            mask_file = next((path for path in candidates if path.is_file()), None)
            if mask_file is not None:
                self._boxes = self._read_boxes(self.task_root / "val_loc.txt")
                self._object_masks = self._read_object_masks(mask_file)
                self.has_masks = True

    def _train_files(self, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
        folder = self.task_root / "train"
        layout = f"{folder}/<class>/<object>-<scene>-<NNNN>.jpg"
        require_folder(folder, layout)
        return files_by_class(folder, classes, layout, f"a BAM {self.task} class")

    def _val_files(self, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
        folder, listing = self.task_root / "val", self.task_root / "val.txt"
        require_folder(folder, f"{folder}/<object>-<scene>-<NNNN>.jpg with labels in {listing}")
        if not listing.is_file():
            raise DatasetLayoutError(f"'{listing}' does not exist: expected one '<file> <label>' line per image")
        files: list[Path] = []
        labels: list[int] = []
        for line_number, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= len(classes):
                raise DatasetLayoutError(
                    f"'{listing}' line {line_number} is {line!r}: expected '<file> <label 0-{len(classes) - 1}>'"
                )
            files.append(path_within(folder, parts[0], listing))
            labels.append(int(parts[1]))
        missing = next((file for file in files if not file.is_file()), None)
        if missing is not None:
            raise DatasetLayoutError(f"'{missing}' is listed in '{listing}' but does not exist")
        if not files:
            raise DatasetLayoutError(f"'{listing}' lists no images: expected one '<file> <label>' line per image")
        return files, labels

    @staticmethod
    def _read_boxes(path: Path) -> dict[str, tuple[int, int, int, int]]:
        boxes = {}
        for line_number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                name, box = line.split()
                y0, x0, y1, x1 = (int(value) for value in box.split(","))
            except ValueError as exc:
                raise DatasetLayoutError(
                    f"'{path}' line {line_number} is {line!r}: expected '<file> y0,x0,y1,x1'"
                ) from exc
            boxes[name] = (y0, x0, y1, x1)
        return boxes

    @staticmethod
    def _read_object_masks(path: Path) -> np.ndarray:
        expected = 100 * len(BAM_OBJECT_CLASSES)
        try:
            masks = load_npy(path)  # an object array, read without letting its pickle run code
        except OSError as exc:
            raise DatasetLayoutError(f"'{path}' cannot be read ({exc}): expected BAM's val_mask") from exc
        if len(masks) != expected:
            raise DatasetLayoutError(
                f"'{path}' holds {len(masks)} masks: expected {expected} (100 per object class), as BAM writes"
            )
        return masks

    def object_mask(self, index: int, size: tuple[int, int]) -> np.ndarray:
        """The pasted object's bool mask for validation image ``index`` in an image of ``size`` (width, height)."""
        assert self._object_masks is not None
        file = self.files[index]
        match = _BAM_NAME.match(file.stem)
        if match is None or match["object"] not in BAM_OBJECT_CLASSES or int(match["number"]) not in _BAM_VAL_NUMBERS:
            raise DatasetLayoutError(
                f"'{file}' is not named like a BAM validation image: expected <object>-<scene>-<0900..0999>.jpg"
            )
        if file.name not in self._boxes:
            raise DatasetLayoutError(f"'{file.name}' has no box in '{self.task_root / 'val_loc.txt'}'")
        y0, x0, y1, x1 = self._boxes[file.name]
        number = BAM_OBJECT_CLASSES.index(match["object"]) * 100 + int(match["number"]) - _BAM_VAL_NUMBERS.start
        crop = np.asarray(self._object_masks[number]) != 0
        placed = fit_mask(crop, (x1 - x0, y1 - y0)).numpy()
        mask = np.zeros((size[1], size[0]), dtype=bool)
        mask[y0:y1, x0:x1] = placed[: max(0, size[1] - y0), : max(0, size[0] - x0)]
        return mask

    def masks(self, index: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The region relevant to the task: the object for ``obj``, everything else for ``scene``."""
        object_mask = torch.from_numpy(self.object_mask(index, size))
        return {"mask": object_mask if self.task == "obj" else ~object_mask}
