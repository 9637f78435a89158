"""ImageNet (ILSVRC-2012 classification) and ImageNet-9 of the Backgrounds Challenge, from local folders."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from p2pvision.data.folders import (
    FileListDataset,
    Transform,
    files_by_class,
    image_files,
    require_folder,
    subfolders,
)
from p2pvision.errors import ConfigError, DatasetLayoutError

__all__ = ["IMAGENET9_CLASSES", "IMAGENET9_VARIANTS", "ImageNet9Dataset", "ImageNetDataset"]

_KAGGLE_IMAGES = Path("ILSVRC", "Data", "CLS-LOC")
_VAL_SOLUTION = "LOC_val_solution.csv"
_SYNSET_MAPPING = "LOC_synset_mapping.txt"


def _read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` lines ``<wnid> <readable name>`` as an ordered dict."""
    mapping = {}
    for line_number, line in enumerate(path.read_text().splitlines(), 1):
        wnid, _, name = line.strip().partition(" ")
        if not wnid:
            continue
        if not wnid.startswith("n"):
            raise DatasetLayoutError(f"'{path}' line {line_number} is {line!r}: expected '<wnid> <readable name>'")
        mapping[wnid] = name.strip() or wnid
    return mapping


def _read_val_solution(path: Path) -> dict[str, str]:
    """``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token is the wnid) as image id -> wnid."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DatasetLayoutError(f"'{path}' has no header 'ImageId,PredictionString': expected Kaggle's file")
        solution = {}
        for row in reader:
            tokens = (row["PredictionString"] or "").split()
            if not tokens:
                raise DatasetLayoutError(f"'{path}' has no label for image {row['ImageId']!r}")
            solution[row["ImageId"]] = tokens[0]
    return solution


class ImageNetDataset(FileListDataset):
    """One split of ImageNet from a local copy.

    Images are read from ``root`` or, in Kaggle's download, from ``root/ILSVRC/Data/CLS-LOC``:

    - ``train/<wnid>/*.JPEG``;
    - ``val/<wnid>/*.JPEG`` (class folders), or flat ``val/*.JPEG`` with labels in ``root/LOC_val_solution.csv``
      (``ImageId,PredictionString``, the first token of the prediction string is the wnid).

    ``classes`` are WordNet ids: those of ``root/LOC_synset_mapping.txt`` in file order when present, else the
    sorted class folders of ``train`` (or of the split, or the wnids of the CSV). ``class_names`` holds the
    readable names from the mapping file (the wnids without it).
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", transform: Transform | None = None) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"ImageNet split '{split}' is unknown: use 'train' or 'val'")
        self.root, self.split = Path(root), split
        require_folder(self.root, f"an ImageNet folder with {split}/<wnid>/*.JPEG")
        images_root = self.root / _KAGGLE_IMAGES if (self.root / _KAGGLE_IMAGES).is_dir() else self.root
        folder = images_root / split
        expected = f"{folder}/<wnid>/*.JPEG"
        if split == "val":
            expected += f" or {folder}/*.JPEG with labels in {self.root / _VAL_SOLUTION}"
        require_folder(folder, expected)
        mapping_file = self.root / _SYNSET_MAPPING
        mapping = _read_synset_mapping(mapping_file) if mapping_file.is_file() else {}
        folders = subfolders(folder)
        train_folders = subfolders(images_root / "train") if (images_root / "train").is_dir() else []
        classes = list(mapping) or train_folders or folders
        if folders:
            files, wnids = self._folder_split(folder, folders)
        elif split == "val":
            files, wnids = self._flat_val(folder)
            classes = classes or sorted(set(wnids))
        else:
            raise DatasetLayoutError(f"'{folder}' has no class folders: expected {folder}/<wnid>/*.JPEG")
        index = {wnid: label for label, wnid in enumerate(classes)}
        unknown = next((wnid for wnid in wnids if wnid not in index), None)
        if unknown is not None:
            source = f"'{mapping_file}'" if mapping else f"the class folders of '{images_root / 'train'}'"
            raise DatasetLayoutError(f"class {unknown!r} of split '{split}' is not listed in {source}")
        self.class_names = [mapping.get(wnid, wnid) for wnid in classes]
        super().__init__(files, [index[wnid] for wnid in wnids], classes, None, transform)

    @staticmethod
    def _folder_split(folder: Path, folders: Sequence[str]) -> tuple[list[Path], list[str]]:
        files: list[Path] = []
        wnids: list[str] = []
        for wnid in folders:
            found = image_files(folder / wnid)
            files += found
            wnids += [wnid] * len(found)
        if not files:
            raise DatasetLayoutError(f"the class folders of '{folder}' hold no images: expected {folder}/<wnid>/*.JPEG")
        return files, wnids

    def _flat_val(self, folder: Path) -> tuple[list[Path], list[str]]:
        files = image_files(folder)
        solution_file = self.root / _VAL_SOLUTION
        if not files:
            raise DatasetLayoutError(
                f"'{folder}' holds neither class folders nor images: expected {folder}/<wnid>/*.JPEG or "
                f"{folder}/*.JPEG with labels in {solution_file}"
            )
        if not solution_file.is_file():
            raise DatasetLayoutError(
                f"'{folder}' holds images without class folders, and '{solution_file}' does not exist: expected "
                f"{folder}/<wnid>/*.JPEG or Kaggle's {_VAL_SOLUTION} next to them"
            )
        solution = _read_val_solution(solution_file)
        unlabelled = next((file for file in files if file.stem not in solution), None)
        if unlabelled is not None:
            raise DatasetLayoutError(f"image '{unlabelled}' has no row in '{solution_file}'")
        return files, [solution[file.stem] for file in files]


IMAGENET9_CLASSES = (
    "00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore",
    "05_insect", "06_musical instrument", "07_primate", "08_fish",
)  # fmt: skip
IMAGENET9_VARIANTS = (
    "original", "only_fg", "no_fg", "only_bg_b", "only_bg_t", "mixed_same", "mixed_rand", "mixed_next",
)  # fmt: skip


class ImageNet9Dataset(FileListDataset):
    """ImageNet-9 and its background variants from the Backgrounds Challenge (MadryLab/backgrounds_challenge).

    ``root`` is the unpacked release (``bg_challenge``): images in ``root/<variant>/<split>/<NN_class>/*.JPEG``
    for variants such as original, only_fg, no_fg, only_bg_b, only_bg_t, mixed_same, mixed_rand, mixed_next;
    foreground masks in ``root/fg_mask/<split>/<NN_class>/<stem>.npy``. ``has_masks`` is True when that
    mask folder exists; then every image needs its mask. Mixed variants name their files
    ``fg_<stem>_bg_<other stem>.JPEG``: the mask is the foreground's (it keeps its place in the image).
    ``classes`` are always the nine of IMAGENET9_CLASSES, so labels stay right when only some class folders
    are present.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        variant: str = "original",
        split: str = "val",
        transform: Transform | None = None,
    ) -> None:
        self.root, self.variant, self.split = Path(root), variant, split
        folder = self.root / variant / split
        layout = f"{self.root}/<variant>/{split}/<NN_class>/*.JPEG"
        if not folder.is_dir():
            require_folder(self.root, layout)
            found = [name for name in subfolders(self.root) if name != "fg_mask"]
            raise DatasetLayoutError(
                f"'{folder}' does not exist: expected {layout} with <variant> one of {', '.join(IMAGENET9_VARIANTS)} "
                f"(found: {', '.join(found) or 'none'})"
            )
        files, labels = files_by_class(folder, IMAGENET9_CLASSES, layout, "an ImageNet-9 class folder")
        masks_root = self.root / "fg_mask" / split
        mask_files = self._match_masks(files, masks_root) if masks_root.is_dir() else None
        super().__init__(files, labels, IMAGENET9_CLASSES, mask_files, transform)

    @staticmethod
    def _match_masks(files: list[Path], masks_root: Path) -> list[Path]:
        masks = []
        for file in files:
            stem = file.stem
            if stem.startswith("fg_") and "_bg_" in stem:
                stem = stem[len("fg_") : stem.index("_bg_")]
            mask = masks_root / file.parent.name / f"{stem}.npy"
            if not mask.is_file():
                raise DatasetLayoutError(f"image '{file}' has no foreground mask: expected '{mask}'")
            masks.append(mask)
        return masks
