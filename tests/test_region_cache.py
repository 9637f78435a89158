"""Region maps are computed once per image, cached, and travel with the image through joint transforms."""

import numpy as np
import pytest
import torch

from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.region_cache import RegionDataset, dataset_fingerprint, region_maps
from p2pvision.data.semisynthetic import SemiSyntheticConfig
from p2pvision.errors import ConfigError
from p2pvision.regions.partition import make_partitioner

CONFIG = SemiSyntheticConfig(image_size=32, n_train=40, n_val=10, n_test=10)


@pytest.fixture(scope="module")
def dataset():
    return SemiSyntheticDataset("train", "object", CONFIG, progress=False)


def test_maps_equal_direct_partition_and_are_cached(dataset, tmp_path, monkeypatch):
    slic = make_partitioner("slic", n_segments=20, compactness=20.0)
    maps = region_maps(dataset, slic, root=tmp_path, num_workers=2, progress=False)
    assert maps.shape == (40, 32, 32) and maps.dtype == np.int16
    for i in (0, 17, 39):
        expected = slic((dataset[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        assert np.array_equal(maps[i], expected)
    monkeypatch.setattr(type(slic), "__call__", lambda self, image: pytest.fail("recomputed a cached map"))
    again = region_maps(dataset, slic, root=tmp_path, progress=False)
    assert np.array_equal(again, maps)


def test_other_partition_or_data_gives_another_entry(dataset, tmp_path):
    region_maps(dataset, make_partitioner("grid", grid=4), root=tmp_path, progress=False)
    region_maps(dataset, make_partitioner("grid", grid=8), root=tmp_path, progress=False)
    val = SemiSyntheticDataset("val", "object", CONFIG, progress=False)
    region_maps(val, make_partitioner("grid", grid=8), root=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_region_dataset_transforms_regions_with_the_image(dataset, tmp_path):
    flip = lambda s: {**s, **{k: s[k].flip(-1) for k in ("image", "mask", "regions")}}  # noqa: E731
    plain = RegionDataset(dataset, make_partitioner("grid", grid=4), root=tmp_path, progress=False)
    flipped = RegionDataset(dataset, make_partitioner("grid", grid=4), transform=flip, root=tmp_path, progress=False)
    a, b = plain[3], flipped[3]
    assert a["regions"].dtype == torch.int64 and a["regions"].max() == 15
    assert torch.equal(b["regions"], a["regions"].flip(-1)) and torch.equal(b["image"], a["image"].flip(-1))
    assert plain.classes == dataset.classes and plain.max_regions == 16


def test_unidentifiable_or_uneven_datasets_are_refused(tmp_path):
    class Anonymous(torch.utils.data.Dataset):
        classes = ["a"]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"image": torch.rand(3, 8 + 4 * i, 8), "label": 0}

    with pytest.raises(ConfigError, match="fingerprint"):
        dataset_fingerprint(Anonymous())
    with pytest.raises(ConfigError, match="differ in size"):
        region_maps(Anonymous(), make_partitioner("grid", grid=2), key="anon", root=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.npy"))
