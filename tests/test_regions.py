"""Partitioners and batched region ops, checked against slow per-pixel / per-region loop references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data
from skimage.measure import label as connected_components
from skimage.segmentation import slic
from skimage.transform import resize

from p2pvision.errors import ConfigError
from p2pvision.regions import (
    GridPartitioner,
    PixelPartitioner,
    SlicPartitioner,
    fast_slic_available,
    make_partitioner,
    merge_small_regions,
    num_regions,
    partition_batch,
    partitioner_names,
    region_adjacency,
    region_areas,
    region_mean,
    region_sum,
    region_to_pixel,
    relabel_contiguous,
    resolve_slic_backend,
)
from p2pvision.regions import partition as partition_module

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SLIC_BACKENDS = ["skimage"] + (["fast_slic"] if fast_slic_available() else [])


def photo(name: str = "astronaut", size: int = 64) -> np.ndarray:
    """A real photo from scikit-image as uint8 (size, size, 3)."""
    image = getattr(data, name)()
    return (resize(image, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)


def random_labels(batch: int, height: int, width: int, slots: int, seed: int) -> torch.Tensor:
    """Blocky random label maps that use only some of ``slots`` (so some slots are empty)."""
    generator = torch.Generator().manual_seed(seed)
    used = torch.randperm(slots, generator=generator)[: max(1, slots // 2)]
    coarse = used[torch.randint(len(used), (batch, (height + 2) // 3, (width + 2) // 3), generator=generator)]
    labels = coarse.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :height, :width]
    noise = torch.rand(batch, height, width, generator=generator) < 0.1
    return torch.where(noise, used[torch.randint(len(used), (batch, height, width), generator=generator)], labels)


def is_contiguous(labels: np.ndarray) -> bool:
    return set(np.unique(labels).tolist()) == set(range(int(labels.max()) + 1))


# ---------------------------------------------------------------- slow references


def reference_sum(values: torch.Tensor, labels: torch.Tensor, slots: int) -> np.ndarray:
    v, lab = values.double().numpy(), labels.numpy()
    batch, channels, height, width = v.shape
    out = np.zeros((batch, slots, channels))
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                out[b, lab[b, y, x]] += v[b, :, y, x]
    return out


def reference_areas(labels: torch.Tensor, slots: int) -> np.ndarray:
    lab = labels.numpy()
    out = np.zeros((lab.shape[0], slots), dtype=np.int64)
    for b in range(lab.shape[0]):
        for value in lab[b].ravel():
            out[b, value] += 1
    return out


def reference_adjacency(labels: torch.Tensor, slots: int, connectivity: int) -> np.ndarray:
    lab = labels.numpy()
    batch, height, width = lab.shape
    steps = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 8 else [])
    out = np.zeros((batch, slots, slots), dtype=bool)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                for dy, dx in steps:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and lab[b, y, x] != lab[b, ny, nx]:
                        out[b, lab[b, y, x], lab[b, ny, nx]] = out[b, lab[b, ny, nx], lab[b, y, x]] = True
    return out


def reference_relabel(image_labels: np.ndarray) -> np.ndarray:
    order = {value: rank for rank, value in enumerate(sorted(set(image_labels.ravel().tolist())))}
    return np.array([[order[v] for v in row] for row in image_labels.tolist()], dtype=np.int64)


# ---------------------------------------------------------------- torch region ops


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch, slots", [(1, 5), (3, 12)])
def test_region_sum_mean_areas_match_loops(device: str, dtype: torch.dtype, batch: int, slots: int) -> None:
    labels = random_labels(batch, 9, 11, slots, seed=slots)
    values = torch.randn(batch, 4, 9, 11, generator=torch.Generator().manual_seed(1), dtype=dtype)
    expected_sum = reference_sum(values, labels, slots)
    expected_areas = reference_areas(labels, slots)
    expected_mean = expected_sum / np.maximum(expected_areas, 1)[..., None]
    assert (expected_areas == 0).any(), "test input must leave some slots empty"

    sums = region_sum(values.to(device), labels.to(device), slots)
    means = region_mean(values.to(device), labels.to(device), slots)
    areas = region_areas(labels.to(device), slots)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    assert sums.dtype == means.dtype == dtype and areas.dtype == torch.int64
    assert sums.shape == means.shape == (batch, slots, 4)
    np.testing.assert_allclose(sums.cpu().double().numpy(), expected_sum, atol=tolerance)
    np.testing.assert_allclose(means.cpu().double().numpy(), expected_mean, atol=tolerance)
    np.testing.assert_array_equal(areas.cpu().numpy(), expected_areas)
    assert torch.all(means.cpu()[torch.from_numpy(expected_areas == 0)] == 0)


def test_region_mean_is_differentiable() -> None:
    labels = random_labels(2, 4, 5, 6, seed=3)
    values = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: region_mean(v, labels, 6), (values,))
    region_mean(values, labels, 6).sum().backward()
    areas = torch.from_numpy(reference_areas(labels, 6)).double()
    expected = (1 / areas).gather(1, labels.view(2, -1)).view(2, 1, 4, 5).expand(2, 2, 4, 5)
    torch.testing.assert_close(values.grad, expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_region_to_pixel_matches_loops(device: str, dtype: torch.dtype) -> None:
    batch, slots, height, width = 3, 10, 7, 8
    labels = random_labels(batch, height, width, slots, seed=5)
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(batch, slots, generator=generator, dtype=torch.float64)
    scores = scores > 0 if dtype == torch.bool else scores.to(dtype)
    coalitions = torch.rand(batch, 4, slots, generator=generator) > 0.5
    features = torch.randn(batch, slots, 3, generator=generator, dtype=torch.float64)
    features = features > 0 if dtype == torch.bool else features.to(dtype)

    pixel_scores = region_to_pixel(scores.to(device), labels.to(device)).cpu()
    pixel_masks = region_to_pixel(coalitions.to(device), labels.to(device)).cpu()
    pixel_features = region_to_pixel(features.to(device), labels.to(device), region_dim=1).cpu()
    assert pixel_scores.shape == (batch, height, width) and pixel_scores.dtype == dtype
    assert pixel_masks.shape == (batch, 4, height, width) and pixel_masks.dtype == torch.bool
    assert pixel_features.shape == (batch, 3, height, width) and pixel_features.dtype == dtype
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                k = labels[b, y, x]
                assert pixel_scores[b, y, x] == scores[b, k]
                assert torch.equal(pixel_masks[b, :, y, x], coalitions[b, :, k])
                assert torch.equal(pixel_features[b, :, y, x], features[b, k])


def test_region_to_pixel_inverts_region_mean_on_piecewise_constant_images() -> None:
    labels = random_labels(2, 12, 10, 9, seed=8).transpose(1, 2)  # non-contiguous labels work too
    per_region = torch.randn(2, 9, 3, dtype=torch.float64)
    image = region_to_pixel(per_region, labels, region_dim=1)
    torch.testing.assert_close(region_to_pixel(region_mean(image, labels, 9), labels, region_dim=1), image)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_region_adjacency_matches_loops(device: str, connectivity: int) -> None:
    labels = random_labels(3, 9, 10, 15, seed=connectivity)
    adjacency = region_adjacency(labels.to(device), 15, connectivity=connectivity).cpu()
    assert adjacency.dtype == torch.bool and adjacency.shape == (3, 15, 15)
    np.testing.assert_array_equal(adjacency.numpy(), reference_adjacency(labels, 15, connectivity))
    assert torch.equal(adjacency, adjacency.transpose(1, 2))
    assert not adjacency.diagonal(dim1=1, dim2=2).any()


def test_region_adjacency_known_answer() -> None:
    labels = torch.tensor([[[0, 0, 1], [2, 3, 1]], [[0, 1, 1], [2, 0, 0]]])
    adjacency = region_adjacency(labels, 5)
    pairs = [{tuple(pair) for pair in adjacency[b].nonzero().tolist() if pair[0] < pair[1]} for b in range(2)]
    assert pairs == [{(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)}, {(0, 1), (0, 2)}]
    corners = region_adjacency(labels, 5, connectivity=8)
    assert corners[1, 1, 2] and corners[1, 2, 1]  # regions 1 and 2 of image 1 touch only at a corner
    assert not adjacency[:, 4].any()  # the empty slot touches nothing


def test_num_regions_and_relabel_contiguous_match_reference() -> None:
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(-3, 40, (3, 6, 7), generator=generator) * 5  # gaps and negative labels
    relabelled = relabel_contiguous(labels)
    for b in range(3):
        np.testing.assert_array_equal(relabelled[b].numpy(), reference_relabel(labels[b].numpy()))
    np.testing.assert_array_equal(relabel_contiguous(labels.numpy()), relabelled.numpy())
    np.testing.assert_array_equal(relabel_contiguous(labels[0].numpy().astype(np.int32)), relabelled[0].numpy())
    expected_counts = [len(np.unique(labels[b].numpy())) for b in range(3)]
    assert num_regions(relabelled).tolist() == expected_counts


def test_ops_reject_labels_outside_the_slots() -> None:
    labels = torch.tensor([[[0, 3]]])
    with pytest.raises(ValueError, match="labels must lie in"):
        region_areas(labels, 3)
    with pytest.raises(ValueError, match="labels must lie in"):
        region_to_pixel(torch.zeros(1, 3, 2), labels)  # (B, K, C) given without region_dim=1
    with pytest.raises(ValueError, match="int64"):
        region_mean(torch.zeros(1, 1, 1, 2), labels.int(), 4)


# ---------------------------------------------------------------- merging regions


def boundary_lengths(labels: np.ndarray, region: int) -> dict[int, int]:
    """Slow count of 4-neighbour pixel pairs between ``region`` and each other region."""
    lengths: dict[int, int] = {}
    height, width = labels.shape
    for y in range(height):
        for x in range(width):
            for ny, nx in ((y + 1, x), (y, x + 1)):
                if ny < height and nx < width:
                    a, b = labels[y, x], labels[ny, nx]
                    if a != b and region in (a, b):
                        other = b if a == region else a
                        lengths[other] = lengths.get(other, 0) + 1
    return lengths


def voronoi_labels(height: int, width: int, seeds: int, seed: int) -> np.ndarray:
    """4-connected regions of random sizes: cells of the nearest of ``seeds`` random points, split into
    4-connected pieces. Half the points are crowded into a corner, which makes many small regions."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, [height, width], size=(seeds, 2))
    points[: seeds // 2] *= 0.3
    y, x = np.mgrid[:height, :width]
    cells = ((y[..., None] - points[:, 0]) ** 2 + (x[..., None] - points[:, 1]) ** 2).argmin(-1)
    return relabel_contiguous(connected_components(cells, background=-1, connectivity=1))


def test_merge_of_one_region_takes_the_smallest_into_its_longest_boundary_neighbour() -> None:
    for seed in range(5):
        labels = voronoi_labels(30, 34, 25, seed)
        count = labels.max() + 1
        areas = np.bincount(labels.ravel())
        smallest = int(np.argmin(areas))
        lengths = boundary_lengths(labels, smallest)
        merged = merge_small_regions(labels, count - 1)
        assert merged.max() + 1 == count - 1
        partner = merged[labels == smallest][0]
        partner_sources = set(np.unique(labels[merged == partner]).tolist()) - {smallest}
        assert len(partner_sources) == 1
        assert lengths[partner_sources.pop()] == max(lengths.values())
        untouched = (labels != smallest) & ~np.isin(labels, list(np.unique(labels[merged == partner])))
        assert len(np.unique(merged[untouched])) == count - 2  # every other region survives unchanged


@pytest.mark.parametrize("target", [1, 2, 7, 40])
def test_merge_gives_exact_count_and_a_connected_coarsening(target: int) -> None:
    labels = voronoi_labels(40, 36, 90, seed=target)
    assert all(connected_components(labels == k, connectivity=1).max() == 1 for k in range(labels.max() + 1))
    merged = merge_small_regions(labels, target)
    assert merged.dtype == np.int64 and merged.shape == labels.shape
    assert merged.max() + 1 == target and is_contiguous(merged)
    for k in range(labels.max() + 1):  # every input region lies in exactly one output region
        assert len(np.unique(merged[labels == k])) == 1
    for k in range(target):
        assert connected_components(merged == k, connectivity=1).max() == 1


def test_merge_leaves_small_enough_maps_alone_and_relabels() -> None:
    labels = np.array([[5, 5, 9], [2, 2, 9]])
    np.testing.assert_array_equal(merge_small_regions(labels, 3), [[1, 1, 2], [0, 0, 2]])
    single_pixels = np.arange(20 * 30).reshape(20, 30)
    merged = merge_small_regions(single_pixels, 37)
    assert merged.max() + 1 == 37
    assert all(connected_components(merged == k, connectivity=1).max() == 1 for k in range(37))


# ---------------------------------------------------------------- partitioners


@pytest.mark.parametrize(
    "name, params",
    [
        ("slic", {"backend": "skimage"}),
        ("slic", {"n_segments": 30, "backend": "skimage"}),
        ("felzenszwalb", {"scale": 20.0, "min_size": 5, "max_regions": 40}),
        ("watershed", {"n_markers": 50}),
        ("grid", {"grid": (5, 7)}),
        ("grid", {"patch_size": 8, "max_regions": 64}),
        ("pixels", {"max_regions": 64 * 64}),
    ],
)
def test_partitioners_return_contiguous_labels_within_the_limit(name: str, params: dict) -> None:
    partitioner = make_partitioner(name, **params)
    for image_name in ("astronaut", "coffee"):
        labels = partitioner(photo(image_name))
        assert labels.shape == (64, 64) and labels.dtype == np.int64
        assert is_contiguous(labels) and labels.max() + 1 <= partitioner.max_regions
    params_json = json.loads(json.dumps(partitioner.params))
    rebuilt = make_partitioner(**params_json)
    assert rebuilt.params == partitioner.params
    np.testing.assert_array_equal(rebuilt(photo()), partitioner(photo()))


def test_slic_merges_excess_segments_down_to_max_regions() -> None:
    image = photo("chelsea", 64)
    raw_count = len(np.unique(slic(image, n_segments=100, compactness=20, start_label=0)))
    assert raw_count > 100, "scikit-image slic must over-segment this image for the test to mean anything"
    labels = SlicPartitioner(backend="skimage")(image)
    assert labels.max() + 1 == 100


def test_grid_and_pixel_layouts() -> None:
    image = np.zeros((4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        GridPartitioner(grid=(2, 3))(image), [[0, 0, 1, 1, 2, 2]] * 2 + [[3, 3, 4, 4, 5, 5]] * 2
    )
    np.testing.assert_array_equal(
        GridPartitioner(patch_size=(3, 4), max_regions=4)(image), [[0, 0, 0, 0, 1, 1]] * 3 + [[2, 2, 2, 2, 3, 3]]
    )
    np.testing.assert_array_equal(PixelPartitioner(max_regions=24)(image), np.arange(24).reshape(4, 6))
    assert GridPartitioner().max_regions == 196


@pytest.mark.parametrize("backend", SLIC_BACKENDS)
def test_slic_does_not_depend_on_the_previous_image(backend: str) -> None:
    first, second = photo("astronaut"), photo("coffee")
    partitioner = SlicPartitioner(backend=backend)
    after_first = (partitioner(first), partitioner(second))
    fresh = SlicPartitioner(backend=backend)(second)
    np.testing.assert_array_equal(after_first[1], fresh)
    assert after_first[1].max() + 1 <= 100 and is_contiguous(after_first[1])


def test_slic_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition_module, "fast_slic_available", lambda: False)
    assert resolve_slic_backend("auto") == "skimage"
    assert SlicPartitioner().params["backend"] == "skimage"
    with pytest.raises(ConfigError, match="fast-slic"):
        SlicPartitioner(backend="fast_slic")
    monkeypatch.setattr(partition_module, "fast_slic_available", lambda: True)
    assert resolve_slic_backend("auto") == "fast_slic"
    assert resolve_slic_backend("skimage") == "skimage"
    with pytest.raises(ConfigError, match="backend"):
        resolve_slic_backend("opencv")


def test_make_partitioner_rejects_bad_names_and_parameters() -> None:
    assert partitioner_names() == ["felzenszwalb", "grid", "pixels", "slic", "watershed"]
    with pytest.raises(ConfigError, match="unknown partitioner"):
        make_partitioner("quickshift")
    with pytest.raises(ConfigError, match="n_segments"):
        make_partitioner("slic", n_segments=0)
    with pytest.raises(ConfigError, match="invalid parameters"):
        make_partitioner("grid", rows=3)
    with pytest.raises(ConfigError, match="max_regions"):
        make_partitioner("grid", patch_size=16)
    with pytest.raises(ValueError, match="uint8"):
        make_partitioner("grid")(np.zeros((8, 8, 3), dtype=np.float32))


@pytest.mark.parametrize("num_workers", [0, 2, None])
def test_partition_batch_matches_partitioning_each_image(num_workers: int | None) -> None:
    arrays = [photo(name, 48) for name in ("astronaut", "coffee", "chelsea")]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    partitioner = make_partitioner("watershed", n_markers=20)
    labels = partition_batch(images, partitioner, num_workers=num_workers)
    assert labels.shape == (3, 48, 48) and labels.dtype == torch.int64
    for b, array in enumerate(arrays):
        np.testing.assert_array_equal(labels[b].numpy(), partitioner(array))
    assert partition_batch(images[:0], partitioner).shape == (0, 48, 48)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        partition_batch(images[0], partitioner)
