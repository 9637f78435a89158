"""The built-in semi-synthetic data set: shapes, balance, disjoint splits, determinism, caching."""

import os

import numpy as np
import pytest
import torch

import p2pvision.data.semisynthetic as ss
from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.semisynthetic import SemiSyntheticConfig, build_semisynthetic
from p2pvision.errors import ConfigError, P2PVisionError

SMALL = SemiSyntheticConfig(image_size=32, n_train=300, n_val=100, n_test=100, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_semisynthetic(SMALL, root=tmp_path_factory.mktemp("ss"), progress=False)


def test_arrays_have_expected_shapes_and_balanced_labels(data):
    train = data.split("train")
    assert train.images.shape == (300, 32, 32, 3) and train.images.dtype == np.uint8
    assert train.object_masks.shape == (300, 32, 32) and train.object_masks.dtype == np.bool_
    assert len(data.object_classes) >= 10 and len(data.scene_classes) >= 10
    assert np.bincount(train.object_labels, minlength=10).tolist() == [30] * 10
    assert np.bincount(train.scene_labels, minlength=10).tolist() == [30] * 10


def test_object_pixels_are_one_colour_and_mask_matches_recorded_area(data):
    test = data.split("test")
    for image, mask in zip(test.images[:20], test.object_masks[:20]):
        assert mask.any()
        colours = np.unique(image[mask].reshape(-1, 3), axis=0)
        assert len(colours) == 1
    assert data.object_area_share("test") == pytest.approx(test.object_masks.mean(), abs=1e-9)


def test_default_objects_are_large_enough():
    data = build_semisynthetic(SemiSyntheticConfig(n_train=200, n_val=100, n_test=100), progress=False)
    for split in ("train", "val", "test"):
        assert 0.10 <= data.object_area_share(split) <= 0.25


def test_splits_share_no_object_instance_and_no_scene_pixels(data):
    arrays = {s: data.split(s) for s in ("train", "val", "test")}
    instances = {s: set(a.object_instances.tolist()) for s, a in arrays.items()}
    assert not instances["train"] & instances["val"]
    assert not instances["train"] & instances["test"]
    assert not instances["val"] & instances["test"]
    # Union of the crop boxes of each split, per photo: the splits' footprints must not overlap.
    footprints = {}
    for split, a in arrays.items():
        for photo, y0, x0, y1, x1 in a.scene_boxes:
            canvas = footprints.setdefault((split, photo), np.zeros((1500, 1500), bool))
            canvas[y0:y1, x0:x1] = True
    for photo in range(len(data.scene_classes)):
        stack = [footprints[(s, photo)] for s in ("train", "val", "test") if (s, photo) in footprints]
        assert (np.sum(stack, axis=0) <= 1).all()


def test_generation_is_deterministic_and_cached(tmp_path, data):
    again = build_semisynthetic(SMALL, root=tmp_path, progress=False)
    assert np.array_equal(again.split("train").images, data.split("train").images)
    stamp = os.path.getmtime(again.root / "meta.json")
    assert build_semisynthetic(SMALL, root=tmp_path, progress=False).root == again.root
    assert os.path.getmtime(again.root / "meta.json") == stamp
    other = build_semisynthetic(
        SemiSyntheticConfig(image_size=32, n_train=300, n_val=100, n_test=100, seed=4), root=tmp_path, progress=False
    )
    assert other.root != again.root
    assert not np.array_equal(other.split("train").images, again.split("train").images)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ss, "_generate_split", fail)
    with pytest.raises(KeyboardInterrupt):
        build_semisynthetic(
            SemiSyntheticConfig(image_size=32, n_train=10, n_val=10, n_test=10), root=tmp_path, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_dataset_samples_for_both_tasks(data):
    root = data.root.parent
    obj = SemiSyntheticDataset("val", "object", SMALL, root=root)
    scene = SemiSyntheticDataset("val", "scene", SMALL, root=root)
    a, b = obj[5], scene[5]
    assert a["image"].shape == (3, 32, 32) and a["image"].dtype == torch.float32
    assert 0 <= a["image"].min() and a["image"].max() <= 1
    assert torch.equal(a["image"], b["image"])
    assert a["label"] == int(data.split("val").object_labels[5]) and b["label"] == int(
        data.split("val").scene_labels[5]
    )
    assert torch.equal(a["mask"], a["object_mask"]) and torch.equal(b["mask"], ~b["object_mask"])
    assert scene.relevant_area_share == pytest.approx(1 - obj.relevant_area_share)
    flipped = SemiSyntheticDataset(
        "val", "object", SMALL, root=root, transform=lambda s: {**s, "image": s["image"].flip(-1)}
    )
    assert torch.equal(flipped[5]["image"], a["image"].flip(-1))


def test_224_pixels_work(tmp_path):
    data = build_semisynthetic(
        SemiSyntheticConfig(image_size=224, n_train=20, n_val=10, n_test=10), root=tmp_path, progress=False
    )
    assert data.split("train").images.shape == (20, 224, 224, 3)
    assert 0.05 < data.object_area_share("train") < 0.35


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"image_size": 8}, "image_size=8"), ({"n_val": -1}, "n_val=-1"), ({"object_scale": (0.9, 0.5)}, "object_scale")],
)
def test_invalid_parameters_are_named(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        SemiSyntheticConfig(**kwargs)


def _write_idx(path, array):
    import gzip

    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_objects_from_idx_files(tmp_path, monkeypatch):
    """Filled objects (a tiny Fashion-MNIST in the real IDX format): masks are solid and textures kept."""
    rng = np.random.default_rng(0)
    items = np.zeros((100, 28, 28), np.uint8)
    items[:, 6:22, 8:20] = rng.integers(60, 255, size=(100, 16, 12))  # a textured filled rectangle
    labels = np.arange(100) % 10
    for part, n in (("train", 80), ("t10k", 20)):
        start = 0 if part == "train" else 80
        _write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", items[start : start + n])
        _write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", labels[start : start + n])
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    config = SemiSyntheticConfig(image_size=32, n_train=20, n_val=10, n_test=10, objects="fashion")
    data = build_semisynthetic(config, root=tmp_path / "out", progress=False)
    assert data.object_classes[0] == "t-shirt"
    train = data.split("train")
    for image, mask in zip(train.images[:5], train.object_masks[:5]):
        ys, xs = np.nonzero(mask)
        box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.mean() > 0.95  # a filled rectangle stays filled
        assert len(np.unique(image[mask].reshape(-1, 3), axis=0)) > 3  # its texture survives the tint


def test_missing_fashion_files_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    config = SemiSyntheticConfig(image_size=32, n_train=10, n_val=10, n_test=10, objects="fashion")
    with pytest.raises(P2PVisionError, match="apt-get install dataset-fashion-mnist"):
        build_semisynthetic(config, root=tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="objects='cifar'"):
        SemiSyntheticConfig(objects="cifar")
