"""Tests for the local data set loaders, each on a tiny fixture built in tmp_path in the data set's real layout."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from p2pvision.data.cifar import CIFAR10_CLASSES, Cifar10Dataset
from p2pvision.data.folders import (
    BAM_OBJECT_CLASSES,
    BAM_SCENE_CLASSES,
    COCO10_CLASSES,
    BamDataset,
    ImageFolderDataset,
    MaskedImageDataset,
)
from p2pvision.data.imagenet import IMAGENET9_CLASSES, ImageNet9Dataset, ImageNetDataset
from p2pvision.errors import DatasetLayoutError


def _save(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _save_mask(path: Path, box: tuple[int, int, int, int], size: tuple[int, int] = (12, 10)) -> Path:
    """A mask of ``size`` (width, height) that is True inside ``box`` = (y0, x0, y1, x1)."""
    y0, x0, y1, x1 = box
    mask = np.zeros((size[1], size[0]), dtype=bool)
    mask[y0:y1, x0:x1] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, mask)
    else:
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
    return path


def _flip(sample: dict) -> dict:
    flipped = {**sample, "image": sample["image"].flip(-1), "transformed": True}
    if "mask" in sample:
        flipped["mask"] = sample["mask"].flip(-1)
    return flipped


def _check_image(sample: dict, height: int, width: int) -> None:
    image = sample["image"]
    assert image.dtype == torch.float32 and image.shape == (3, height, width)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


def _check_transform(dataset_type: type, *args: object, **kwargs: object) -> None:
    plain = dataset_type(*args, **kwargs)[0]
    transformed = dataset_type(*args, **kwargs, transform=_flip)[0]
    assert transformed["transformed"] is True
    torch.testing.assert_close(transformed["image"], plain["image"].flip(-1))
    if "mask" in plain:
        assert torch.equal(transformed["mask"], plain["mask"].flip(-1))


# --- ImageFolderDataset --------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    _save(root / "images" / "dog" / "d1.png", (250, 0, 0))
    _save(root / "images" / "dog" / "d2.jpg", (0, 250, 0))
    _save(root / "images" / "cat" / "c1.png", (0, 0, 250), size=(16, 8))
    (root / "images" / "cat" / "notes.txt").write_text("not an image")
    _save_mask(root / "masks" / "dog" / "d1.png", (0, 0, 5, 6))
    _save_mask(root / "masks" / "dog" / "d2.npy", (5, 6, 10, 12))
    _save_mask(root / "masks" / "cat" / "c1.png", (0, 0, 2, 2), size=(8, 4))  # half size: resized
    return root


def test_image_folder_samples(image_folder: Path) -> None:
    dataset = ImageFolderDataset(image_folder / "images", masks_root=image_folder / "masks")
    assert len(dataset) == 3
    assert dataset.classes == ["cat", "dog"] and dataset.has_masks
    assert [dataset[i]["label"] for i in range(3)] == [0, 1, 1]
    assert [dataset[i]["index"] for i in range(3)] == [0, 1, 2]
    cat, dog_png, dog_jpg = dataset[0], dataset[1], dataset[2]
    _check_image(cat, 8, 16)
    _check_image(dog_png, 10, 12)
    torch.testing.assert_close(dog_png["image"][:, 0, 0], torch.tensor([250, 0, 0]) / 255)
    assert cat["mask"].dtype == torch.bool and cat["mask"].shape == (8, 16)
    assert cat["mask"][:4, :4].all() and cat["mask"].sum() == 16
    assert dog_png["mask"][4, 5] and not dog_png["mask"][5, 6]
    assert dog_jpg["mask"][5, 6] and not dog_jpg["mask"][4, 5]


def test_image_folder_without_masks_and_with_fixed_classes(image_folder: Path) -> None:
    dataset = ImageFolderDataset(image_folder / "images", classes=["dog", "bird", "cat"])
    assert not dataset.has_masks and "mask" not in dataset[0]
    assert dataset.samples[0] == (image_folder / "images" / "dog" / "d1.png", 0)
    assert dataset.classes == ["dog", "bird", "cat"]
    assert [dataset[i]["label"] for i in range(3)] == [0, 0, 2]
    _check_transform(ImageFolderDataset, image_folder / "images", masks_root=image_folder / "masks")


def test_an_empty_class_folder_and_a_stretched_mask_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "images" / "cat" / "c1.png", (1, 2, 3))
    (tmp_path / "images" / "dog").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"class folder '.*images/dog' holds no images"):
        ImageFolderDataset(tmp_path / "images")
    (tmp_path / "images" / "dog").rmdir()
    _save_mask(tmp_path / "masks" / "cat" / "c1.png", (0, 0, 5, 5), size=(24, 20))  # twice the size: resized
    dataset = ImageFolderDataset(tmp_path / "images", masks_root=tmp_path / "masks")
    assert dataset[0]["mask"].shape == (10, 12)
    _save_mask(tmp_path / "masks" / "cat" / "c1.png", (0, 0, 5, 5), size=(12, 30))  # another shape: stretched
    with pytest.raises(DatasetLayoutError, match=r"mask '.*c1.png' is 12x30 but its image '.*c1.png' is 12x10"):
        ImageFolderDataset(tmp_path / "images", masks_root=tmp_path / "masks")[0]


def test_image_folder_layout_errors(image_folder: Path, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    _save(flat / "a.png", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match=r"has no class folders: expected .*flat/<class>/<image files>"):
        ImageFolderDataset(flat)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetLayoutError, match=r"images/cat' is not one of the given classes: expected .* bird, dog"):
        ImageFolderDataset(image_folder / "images", classes=["bird", "dog"])
    (image_folder / "masks" / "dog" / "d2.npy").unlink()
    with pytest.raises(DatasetLayoutError) as exc_info:
        ImageFolderDataset(image_folder / "images", masks_root=image_folder / "masks")
    message = str(exc_info.value)
    assert str(image_folder / "images" / "dog" / "d2.jpg") in message
    assert str(image_folder / "masks" / "dog" / "d2.png") in message


# --- MaskedImageDataset (COCO-10 style) ----------------------------------------------------------------------


@pytest.mark.parametrize("masks_folder", ["test_masks", "masks/test"])
def test_masked_folder_both_mask_layouts(tmp_path: Path, masks_folder: str) -> None:
    for name, colour in [("car", (10, 10, 10)), ("vase", (200, 200, 200))]:
        _save(tmp_path / "test" / name / "000001.jpg", colour)
        _save_mask(tmp_path / masks_folder / name / "000001.png", (2, 3, 4, 5))
    dataset = MaskedImageDataset(tmp_path, split="test", classes=COCO10_CLASSES)
    assert len(dataset) == 2 and dataset.has_masks
    assert dataset.classes == list(COCO10_CLASSES)
    assert [dataset[0]["label"], dataset[1]["label"]] == [1, 9]
    sample = dataset[1]
    _check_image(sample, 10, 12)
    assert sample["mask"][2, 3] and sample["mask"].sum() == 4
    _check_transform(MaskedImageDataset, tmp_path, split="test")


def test_masked_folder_layout_errors(tmp_path: Path) -> None:
    _save(tmp_path / "train" / "cat" / "1.png", (0, 0, 0))
    with pytest.raises(DatasetLayoutError) as exc_info:
        MaskedImageDataset(tmp_path, split="train")
    message = str(exc_info.value)
    assert "train_masks/<class>/<image stem>.png" in message and "masks/train/<class>/<image stem>.png" in message
    with pytest.raises(DatasetLayoutError, match=r"val/<class>/<image files>"):
        MaskedImageDataset(tmp_path, split="val")


# --- CIFAR-10 ------------------------------------------------------------------------------------------------


def _write_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({b"batch_label": b"fixture", b"data": images.reshape(len(images), 3072), b"labels": labels}, handle)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    for number in range(1, 6):
        images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
        images[0, 0] = 255  # first image of each batch: pure red
        images[1, 2, 5, 7] = 51  # second: one blue pixel
        _write_batch(folder / f"data_batch_{number}", images, [number, 0])
    _write_batch(folder / "test_batch", np.full((3, 3, 32, 32), 128, dtype=np.uint8), [9, 8, 7])
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [name.encode() for name in CIFAR10_CLASSES], b"num_vis": 3072}, handle)
    return tmp_path


def test_cifar_train_and_test(cifar_root: Path) -> None:
    train = Cifar10Dataset(cifar_root, split="train")
    assert len(train) == 10 and train.classes == list(CIFAR10_CLASSES) and not train.has_masks
    assert [train[i]["label"] for i in range(0, 10, 2)] == [1, 2, 3, 4, 5]
    red, blue = train[0], train[1]
    _check_image(red, 32, 32)
    assert red["image"][0].eq(1).all() and red["image"][1:].eq(0).all()
    assert blue["image"][2, 5, 7] == pytest.approx(0.2) and blue["image"].sum() == pytest.approx(0.2)
    assert "mask" not in red and red["index"] == 0
    test = Cifar10Dataset(cifar_root / "cifar-10-batches-py", split="test")
    assert len(test) == 3 and [test[i]["label"] for i in range(3)] == [9, 8, 7]
    assert test[-1]["index"] == 2
    _check_transform(Cifar10Dataset, cifar_root, split="test")
    assert test.fingerprint() == Cifar10Dataset(cifar_root, split="test").fingerprint() != train.fingerprint()
    assert test.fingerprint() != Cifar10Dataset(cifar_root, split="test", transform=_flip).fingerprint()


def test_cifar_layout_errors(cifar_root: Path, tmp_path: Path) -> None:
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetLayoutError) as exc_info:
        Cifar10Dataset(cifar_root, split="train")
    message = str(exc_info.value)
    assert "data_batch_3' does not exist" in message and "cifar-10-batches-py" in message
    _write_batch(cifar_root / "cifar-10-batches-py" / "test_batch", np.zeros((2, 3, 16, 64), np.uint8), [1])
    with pytest.raises(DatasetLayoutError, match=r"expected a dict with b'data' \(N,3072\) uint8"):
        Cifar10Dataset(cifar_root, split="test")
    (cifar_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetLayoutError, match="not a readable CIFAR-10 batch"):
        Cifar10Dataset(cifar_root, split="test")


class _RunsCode:
    """Unpickles as a call of os.system: what a crafted data file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_cannot_run_code(cifar_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = cifar_root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": [1]}))
    with pytest.raises(DatasetLayoutError, match=r"asks to load (posix|os)\.system.*refused"):
        Cifar10Dataset(cifar_root, split="test")
    assert not marker.exists()


# --- ImageNet ------------------------------------------------------------------------------------------------

_WNIDS = ("n01440764", "n01443537", "n01484850")


def _imagenet_train(images_root: Path) -> None:
    for label, wnid in enumerate(_WNIDS):
        for number in range(2):
            _save(images_root / "train" / wnid / f"{wnid}_{number}.JPEG", (label * 100, number * 100, 0))


def _imagenet_flat_val(root: Path, images_root: Path) -> None:
    rows = [("ILSVRC2012_val_00000001", _WNIDS[2]), ("ILSVRC2012_val_00000002", _WNIDS[0])]
    for image_id, _ in rows:
        _save(images_root / "val" / f"{image_id}.JPEG", (50, 50, 50), size=(14, 9))
    with (root / "LOC_val_solution.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "PredictionString"])
        for image_id, wnid in rows:
            writer.writerow([image_id, f"{wnid} 1 2 10 8 {wnid} 0 0 5 5 "])


def test_imagenet_train_and_kaggle_val(tmp_path: Path) -> None:
    images_root = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    _imagenet_train(images_root)
    _imagenet_flat_val(tmp_path, images_root)
    (tmp_path / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\n"
    )
    train = ImageNetDataset(tmp_path, split="train")
    assert len(train) == 6 and train.classes == list(_WNIDS) and not train.has_masks
    assert train.class_names[0] == "tench, Tinca tinca"
    assert [train[i]["label"] for i in range(6)] == [0, 0, 1, 1, 2, 2]
    _check_image(train[3], 10, 12)
    val = ImageNetDataset(tmp_path, split="val")
    assert val.classes == list(_WNIDS) and len(val) == 2
    assert [val[0]["label"], val[1]["label"]] == [2, 0]
    _check_image(val[0], 9, 14)
    _check_transform(ImageNetDataset, tmp_path, split="val")


def test_imagenet_val_class_folders_without_mapping(tmp_path: Path) -> None:
    _imagenet_train(tmp_path)
    _save(tmp_path / "val" / _WNIDS[1] / "v.JPEG", (0, 0, 0))
    val = ImageNetDataset(tmp_path, split="val")
    assert val.classes == list(_WNIDS) and val.class_names == list(_WNIDS)
    assert len(val) == 1 and val[0]["label"] == 1


def test_imagenet_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"train/<wnid>/\*\.JPEG"):
        ImageNetDataset(tmp_path, split="train")
    _imagenet_train(tmp_path)
    _save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match=r"LOC_val_solution\.csv' does not exist"):
        ImageNetDataset(tmp_path, split="val")
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nother,n01440764 1 1 2 2\n")
    with pytest.raises(DatasetLayoutError, match=r"ILSVRC2012_val_00000001\.JPEG' has no row in"):
        ImageNetDataset(tmp_path, split="val")


# --- ImageNet-9 (Backgrounds Challenge) ----------------------------------------------------------------------


@pytest.fixture
def imagenet9_root(tmp_path: Path) -> Path:
    root = tmp_path / "bg_challenge"
    for name, stem in [("01_bird", "n01530575_1001"), ("08_fish", "n01440764_2002")]:
        _save(root / "original" / "val" / name / f"{stem}.JPEG", (90, 90, 90), size=(16, 16))
        _save(root / "mixed_rand" / "val" / name / f"fg_{stem}_bg_n02085620_3003.JPEG", (9, 9, 9), size=(16, 16))
        _save_mask(root / "fg_mask" / "val" / name / f"{stem}.npy", (4, 4, 12, 8), size=(16, 16))
    return root


def test_imagenet9_variants_and_masks(imagenet9_root: Path) -> None:
    original = ImageNet9Dataset(imagenet9_root, variant="original")
    assert original.classes == list(IMAGENET9_CLASSES) and original.classes[8] == "08_fish"
    assert len(original) == 2 and original.has_masks
    assert [original[0]["label"], original[1]["label"]] == [1, 8]
    sample = original[1]
    _check_image(sample, 16, 16)
    assert sample["mask"].shape == (16, 16) and sample["mask"][4, 4] and not sample["mask"][4, 8]
    assert sample["mask"].sum() == 32
    mixed = ImageNet9Dataset(imagenet9_root, variant="mixed_rand")
    assert torch.equal(mixed[0]["mask"], original[0]["mask"])
    _check_transform(ImageNet9Dataset, imagenet9_root, variant="mixed_rand")


def test_imagenet9_without_mask_folder(imagenet9_root: Path) -> None:
    for mask in (imagenet9_root / "fg_mask").rglob("*.npy"):
        mask.unlink()
    with pytest.raises(DatasetLayoutError, match=r"has no foreground mask: expected .*fg_mask/val/01_bird/"):
        ImageNet9Dataset(imagenet9_root)
    for folder in sorted((imagenet9_root / "fg_mask").rglob("*"), reverse=True):
        folder.rmdir()
    (imagenet9_root / "fg_mask").rmdir()
    dataset = ImageNet9Dataset(imagenet9_root)
    assert not dataset.has_masks and "mask" not in dataset[0]


def test_imagenet9_layout_errors(imagenet9_root: Path) -> None:
    with pytest.raises(DatasetLayoutError) as exc_info:
        ImageNet9Dataset(imagenet9_root, variant="only_fg")
    message = str(exc_info.value)
    assert "only_fg/val' does not exist" in message and "<variant>/val/<NN_class>/*.JPEG" in message
    assert "found: mixed_rand, original" in message
    _save(imagenet9_root / "original" / "val" / "bird" / "x.JPEG", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match="not an ImageNet-9 class folder: expected .* 00_dog, 01_bird"):
        ImageNet9Dataset(imagenet9_root)


# --- BAM -----------------------------------------------------------------------------------------------------


@pytest.fixture
def bam_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for task in ("obj", "scene"):
        base = root / task
        _save(base / "train" / ("dog" if task == "obj" else "bedroom") / "dog-bedroom-0001.jpg", (1, 2, 3), (16, 16))
        _save(base / "train" / ("zebra" if task == "obj" else "runway") / "zebra-runway-0002.jpg", (1, 2, 3), (16, 16))
        _save(base / "val" / "dog-bedroom-0901.jpg", (200, 100, 50), size=(16, 16))
        _save(base / "val" / "zebra-runway-0900.jpg", (50, 100, 200), size=(16, 16))
        obj_label = BAM_OBJECT_CLASSES.index
        labels = (2, 9) if task == "obj" else (1, 7)  # dog, zebra / bedroom, runway
        (base / "val.txt").write_text(f"dog-bedroom-0901.jpg {labels[0]}\nzebra-runway-0900.jpg {labels[1]}\n")
        (base / "val_loc.txt").write_text("dog-bedroom-0901.jpg 2,4,6,12\nzebra-runway-0900.jpg 10,10,16,16\n")
        masks = np.empty(1000, dtype=object)
        for number in range(1000):
            masks[number] = np.zeros((3, 3), dtype=np.uint8)
        masks[100 * obj_label("dog") + 1] = np.array([[1, 0], [0, 0]], dtype=np.uint8)  # top-left quarter
        masks[100 * obj_label("zebra")] = np.ones((5, 5), dtype=np.uint8)
        with (base / "val_mask").open("wb") as handle:  # BAM writes it without the .npy suffix
            np.save(handle, masks, allow_pickle=True)
    return root


def test_bam_object_task(bam_root: Path) -> None:
    train = BamDataset(bam_root, task="obj", split="train")
    assert train.classes == list(BAM_OBJECT_CLASSES) and len(train) == 2 and not train.has_masks
    assert [train[0]["label"], train[1]["label"]] == [2, 9]
    _check_image(train[0], 16, 16)
    val = BamDataset(bam_root, task="obj", split="val")
    assert len(val) == 2 and val.has_masks
    assert [val[0]["label"], val[1]["label"]] == [2, 9]
    dog = val[0]
    _check_image(dog, 16, 16)
    # Box rows 2..6, columns 4..12; the mask's top-left quarter is rows 2..4, columns 4..8.
    assert dog["mask"][2:4, 4:8].all() and dog["mask"].sum() == 8
    assert np.array_equal(val.object_mask(0, (16, 16)), dog["mask"].numpy())
    zebra = val[1]
    assert zebra["mask"][10:, 10:].all() and zebra["mask"].sum() == 36
    _check_transform(BamDataset, bam_root, task="obj", split="val")


def test_bam_scene_task_mask_is_the_background(bam_root: Path) -> None:
    val = BamDataset(bam_root, task="scene", split="val")
    assert val.classes == list(BAM_SCENE_CLASSES)
    assert [val[0]["label"], val[1]["label"]] == [1, 7]
    dog = val[0]
    assert (~dog["mask"]).sum() == 8 and not dog["mask"][2:4, 4:8].any() and dog["mask"][0, 0]
    assert BamDataset(bam_root, task="scene", split="train").classes[1] == "bedroom"


def test_a_crafted_bam_mask_file_cannot_run_code(bam_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    masks = np.empty(1000, dtype=object)
    masks[:] = [np.zeros((2, 2), dtype=np.uint8)] * 1000
    masks[5] = _RunsCode(marker)
    with (bam_root / "obj" / "val_mask").open("wb") as handle:
        np.save(handle, masks, allow_pickle=True)
    with pytest.raises(DatasetLayoutError, match=r"val_mask' asks to load (posix|os)\.system.*refused"):
        BamDataset(bam_root, task="obj", split="val")
    assert not marker.exists()


def test_a_bam_listing_naming_a_file_outside_its_folder_is_refused(bam_root: Path) -> None:
    (bam_root / "obj" / "val.txt").write_text("../../../outside.jpg 2\n")
    with pytest.raises(DatasetLayoutError, match=r"val\.txt' names '\.\./\.\./\.\./outside\.jpg', which lies outside"):
        BamDataset(bam_root, task="obj", split="val")


def test_bam_without_masks_and_layout_errors(bam_root: Path) -> None:
    (bam_root / "obj" / "val_mask").unlink()
    assert not BamDataset(bam_root, task="obj", split="val").has_masks
    (bam_root / "obj" / "val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"obj/val\.txt' does not exist: expected one '<file> <label>' line"):
        BamDataset(bam_root, task="obj", split="val")
    _save(bam_root / "obj" / "train" / "bedroom" / "dog-bedroom-0003.jpg", (0, 0, 0))
    with pytest.raises(DatasetLayoutError, match=r"not a BAM obj class: expected .*train/<class>/<object>-<scene>"):
        BamDataset(bam_root, task="obj", split="train")
