"""Joint transforms keep image, object mask and region map aligned."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as F

from p2pvision.data.transforms import (
    BatchAugmentation,
    ColorJitter,
    JointCenterCrop,
    JointCompose,
    JointRandomHorizontalFlip,
    JointRandomResizedCrop,
    JointResize,
)
from p2pvision.errors import ConfigError
from p2pvision.regions.ops import relabel_contiguous

PALETTE_SIZE = 64


def colour_of(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) labels < 64 -> (3, H, W) float64 image of colours (t, t^2, t^3), t = label / 63.

    These colours lie on the moment curve, so none is a mixture of others: a pixel that resampling blended
    from two regions never shows a valid colour, and a pixel with a valid colour saw only one region."""
    t = labels.double() / (PALETTE_SIZE - 1)
    return torch.stack([t, t**2, t**3])


def pure_label_of(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode :func:`colour_of`: the label at each pixel and whether the pixel shows an unblended colour."""
    labels = (image[0] * (PALETTE_SIZE - 1)).round().long().clamp(0, PALETTE_SIZE - 1)
    pure = (image - colour_of(labels)).abs().amax(0) < 1e-6
    return labels, pure


def coded_sample(height: int = 192, width: int = 168, block: int = 24, seed: int = 0) -> dict:
    """Regions are square blocks with shuffled labels (56 of them by default); the image colour encodes the
    label; the mask is the regions with label divisible by 3; "target" is an extra key that must pass through."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = height // block, width // block
    blocks = torch.randperm(rows * cols, generator=generator).view(rows, cols)
    regions = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)
    return {
        "image": colour_of(regions), "mask": regions % 3 == 0, "object_mask": regions % 3 == 1, "regions": regions,
        "target": 7,
    }  # fmt: skip


def reference_crop_resize(labels: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Nearest-exact resampling of the crop box (top, left, height, width) to ``size``, one pixel at a time:
    output pixel (y, x) takes the source pixel that contains its centre."""
    top, left, box_height, box_width = box
    source = labels.tolist()
    out = [[0] * size[1] for _ in range(size[0])]
    for y in range(size[0]):
        for x in range(size[1]):
            source_y = top + int((y + 0.5) * box_height / size[0])
            source_x = left + int((x + 0.5) * box_width / size[1])
            out[y][x] = source[source_y][source_x]
    return torch.tensor(out, dtype=labels.dtype)


def reference_relabel(labels: torch.Tensor) -> torch.Tensor:
    order = {value: rank for rank, value in enumerate(sorted(set(labels.flatten().tolist())))}
    return torch.tensor([[order[v] for v in row] for row in labels.tolist()])


def assert_aligned(original: dict, transformed: dict, box: tuple[int, int, int, int]) -> None:
    """Mask and regions equal a per-pixel nearest-exact resampling of ``box`` (regions then renumbered
    0..K'-1 in order), and every unblended image pixel shows the colour of the region it is labelled with."""
    size = tuple(transformed["regions"].shape)
    expected_labels = reference_crop_resize(original["regions"], box, size)
    assert torch.equal(transformed["regions"], reference_relabel(expected_labels))
    assert torch.equal(transformed["mask"], reference_crop_resize(original["mask"], box, size))
    assert torch.equal(transformed["object_mask"], reference_crop_resize(original["object_mask"], box, size))
    assert tuple(transformed["image"].shape) == (3, *size)
    decoded, pure = pure_label_of(transformed["image"])
    assert pure.float().mean() > 0.3, "the test needs unblended pixels to check"
    assert torch.equal(decoded[pure], expected_labels[pure])
    assert transformed["target"] == 7


def test_flip_flips_image_mask_and_regions_identically() -> None:
    sample = coded_sample()
    flipped = JointRandomHorizontalFlip(p=1.0)(sample)
    for key in ("image", "mask", "object_mask", "regions"):
        assert torch.equal(flipped[key], sample[key].flip(-1))
    assert flipped["target"] == 7
    kept = JointRandomHorizontalFlip(p=0.0)(sample)
    assert all(torch.equal(kept[key], sample[key]) for key in ("image", "mask", "regions"))


@pytest.mark.parametrize(
    "transform, box",
    [
        (JointResize((113, 97)), (0, 0, 192, 168)),
        (JointResize(211), (0, 0, 192, 168)),
        (JointCenterCrop((100, 150)), (46, 9, 100, 150)),
    ],
    ids=["resize-down", "resize-up", "center-crop"],
)
def test_deterministic_geometry_keeps_everything_aligned(transform, box: tuple[int, int, int, int]) -> None:
    sample = coded_sample()
    out = transform(sample)
    assert out["mask"].dtype == torch.bool and out["regions"].dtype == torch.int64
    assert_aligned(sample, out, box)


def test_random_resized_crops_keep_everything_aligned_and_drop_vanished_regions() -> None:
    sample = coded_sample()
    transform = JointRandomResizedCrop(48, scale=(0.1, 1.0), generator=torch.Generator().manual_seed(0))
    boxes = JointRandomResizedCrop(48, scale=(0.1, 1.0), generator=torch.Generator().manual_seed(0))
    counts = set()
    for _ in range(5):
        box = boxes.crop_box(192, 168)
        out = transform(sample)
        assert out["image"].shape == (3, 48, 48)
        assert_aligned(sample, out, box)
        counts.add(int(out["regions"].max()) + 1)
    assert min(counts) < 56  # some crops lose regions, and their labels are renumbered


def test_resize_of_an_int_matches_the_shorter_side() -> None:
    out = JointResize(28)(coded_sample(64, 56, block=8))
    assert out["image"].shape == (3, 32, 28) and out["regions"].shape == (32, 28)


def test_seeded_generator_makes_augmentation_reproducible() -> None:
    def pipeline(seed: int) -> JointCompose:
        generator = torch.Generator().manual_seed(seed)
        return JointCompose(
            [
                JointRandomResizedCrop(24, generator=generator),
                JointRandomHorizontalFlip(generator=generator),
                ColorJitter(0.4, 0.4, 0.4, 0.2, generator=generator),
            ]
        )

    sample = coded_sample()
    first, second, other = pipeline(1)(sample), pipeline(1)(sample), pipeline(2)(sample)
    assert all(torch.equal(first[key], second[key]) for key in ("image", "mask", "regions"))
    assert not torch.equal(first["image"], other["image"])
    torch.manual_seed(5)
    global_first = JointRandomResizedCrop(24)(sample)
    torch.manual_seed(5)
    assert torch.equal(JointRandomResizedCrop(24)(sample)["regions"], global_first["regions"])


def test_color_jitter_touches_only_the_image() -> None:
    sample = coded_sample()
    out = ColorJitter(0.4, 0.4, 0.4, 0.2, generator=torch.Generator().manual_seed(0))(sample)
    assert out["mask"] is sample["mask"] and out["regions"] is sample["regions"] and out["target"] == 7
    assert not torch.equal(out["image"], sample["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    assert torch.equal(ColorJitter()(sample)["image"], sample["image"])


def test_samples_without_mask_or_regions_and_invalid_input() -> None:
    image_only = {"image": torch.rand(3, 20, 30)}
    assert JointResize((10, 15))(image_only).keys() == {"image"}
    with pytest.raises(ValueError, match="regions"):
        JointResize(10)({"image": torch.rand(3, 20, 30), "regions": torch.zeros(20, 31, dtype=torch.int64)})
    with pytest.raises(ValueError, match="larger than the image"):
        JointCenterCrop(40)(image_only)
    with pytest.raises(ConfigError, match="scale"):
        JointRandomResizedCrop(10, scale=(0.5, 0.1))
    with pytest.raises(ConfigError, match="hue"):
        ColorJitter(hue=0.7)


def coded_batch(count: int, height: int, width: int, block: int = 8) -> dict:
    """``count`` coded samples (see :func:`coded_sample`) collated into a batch, images as float32."""
    samples = [coded_sample(height, width, block, seed=seed) for seed in range(count)]
    keys = ("image", "mask", "object_mask", "regions")
    batch = {key: torch.stack([sample[key] for sample in samples]) for key in keys}
    return {**batch, "image": batch["image"].float(), "target": 7}


def per_sample_reference(sample: dict, box: tuple[int, int, int, int], size: int, flip: bool, order, factors) -> dict:
    """The per-sample transforms with the given draws: JointRandomResizedCrop with ``box``, a flip, then torchvision's
    colour adjustments in ``order`` with ``factors`` (what ColorJitter does with the factors it draws)."""
    crop = JointRandomResizedCrop(size)
    with mock.patch.object(crop, "crop_box", return_value=box):
        out = crop(sample)
    if flip:
        out = JointRandomHorizontalFlip(p=1.0)(out)
    adjust = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    image = out["image"]
    for index in order:
        image = adjust[index](image, float(factors[index]))
    return {**out, "image": image}


@pytest.mark.parametrize(
    "dtype, jitter, tolerance", [(torch.float32, True, 2e-6), (torch.float64, False, 1e-12)], ids=["float32", "float64"]
)
def test_batch_augmentation_equals_the_per_sample_transforms_for_the_same_draws(dtype, jitter, tolerance) -> None:
    """Crop, flip and colour jitter of a whole batch equal the per-sample transforms image by image: images to float
    rounding (float32 resizes in torch compute source coordinates in float32; torchvision's hue works in float32),
    masks and regions exactly; the crop and flip of float64 images agree to 1e-12."""
    batch = coded_batch(12, 64, 64)
    batch["image"] = batch["image"].to(dtype)
    augment = BatchAugmentation(
        JointRandomResizedCrop(64, scale=(0.08, 1.0)),
        JointRandomHorizontalFlip(),
        ColorJitter(0.4, 0.4, 0.4, 0.2) if jitter else None,
    )
    drawn = augment.draw(12, 64, 64, torch.Generator().manual_seed(3))
    assert 0 < int(drawn.flips.sum()) < 12 and len({tuple(row) for row in drawn.jitter_order.tolist()}) > 1
    out = augment.apply(batch, drawn)
    assert out["target"] == 7 and out["image"].dtype == dtype and out["regions"].dtype == torch.int64
    for index in range(12):
        sample = {key: batch[key][index] for key in ("image", "mask", "object_mask", "regions")}
        box = tuple(drawn.boxes[index].tolist())
        order = drawn.jitter_order[index].tolist() if jitter else []
        expected = per_sample_reference(sample, box, 64, bool(drawn.flips[index]), order, drawn.jitter_factors[index])
        assert (out["image"][index] - expected["image"]).abs().max() < tolerance
        for key in ("mask", "object_mask", "regions"):
            assert torch.equal(out[key][index], expected[key]), key


@pytest.mark.parametrize("size, output", [((48, 40), (48, 40)), ((40, 32), (56, 48))], ids=["same-size", "enlarged"])
def test_batch_crops_keep_everything_aligned_exactly(size, output) -> None:
    """Masks and regions of batched crops equal the exact per-pixel nearest-exact reference (also where the output
    size is not a power of two), and unblended image pixels show their region's colour."""
    batch = coded_batch(8, *size)
    batch["image"] = batch["image"].double()
    augment = BatchAugmentation(JointRandomResizedCrop(output, scale=(0.1, 1.0)))
    drawn = augment.draw(8, *size, generator=torch.Generator().manual_seed(0))
    out = augment.apply(batch, drawn)
    for index in range(8):
        original = {**{key: batch[key][index] for key in ("image", "mask", "object_mask", "regions")}, "target": 7}
        transformed = {**{key: out[key][index] for key in ("image", "mask", "object_mask", "regions")}, "target": 7}
        assert_aligned(original, transformed, tuple(drawn.boxes[index].tolist()))


def test_batch_augmentation_is_reproducible_and_draws_like_random_resized_crop() -> None:
    batch = coded_batch(16, 32, 32)
    augment = BatchAugmentation(JointRandomResizedCrop(32, scale=(0.3, 1.0)), JointRandomHorizontalFlip())
    first = augment(batch, torch.Generator().manual_seed(1))
    again = augment(batch, torch.Generator().manual_seed(1))
    other = augment(batch, torch.Generator().manual_seed(2))
    assert all(torch.equal(first[key], again[key]) for key in ("image", "mask", "regions"))
    assert not torch.equal(first["image"], other["image"])
    crop = JointRandomResizedCrop(32, scale=(0.3, 1.0), ratio=(0.5, 2.0))
    boxes = torch.from_numpy(BatchAugmentation(crop).draw(4000, 40, 30, torch.Generator().manual_seed(0)).boxes)
    top, left, height, width = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 40).all() and (left + width <= 30).all()
    share, aspect = (height * width).double() / 1200, width.double() / height
    assert share.min() > 0.28 and share.max() <= 1 and aspect.min() > 0.45 and aspect.max() < 2.2
    torch.manual_seed(0)
    reference = torch.tensor([RandomResizedCrop.get_params(torch.zeros(3, 40, 30), [0.3, 1.0], [0.5, 2.0])
                              for _ in range(4000)])  # fmt: skip
    reference_share = (reference[:, 2] * reference[:, 3]).double() / 1200
    reference_aspect = reference[:, 3].double() / reference[:, 2]
    assert abs(share.mean() - reference_share.mean()) < 0.015 and abs(share.std() - reference_share.std()) < 0.015
    assert abs(aspect.log().mean() - reference_aspect.log().mean()) < 0.03
    # the fallback when no try fits is torchvision's: the centre crop clipped to the ratio
    impossible = JointRandomResizedCrop(32, scale=(0.99, 1.0), ratio=(2.0, 3.0))
    fallback = BatchAugmentation(impossible).draw(3, 30, 30, torch.Generator().manual_seed(0)).boxes
    torch.manual_seed(0)
    expected = RandomResizedCrop.get_params(torch.zeros(3, 30, 30), [0.99, 1.0], [2.0, 3.0])
    assert fallback.tolist() == [list(expected)] * 3
    # the per-sample crop draws its box with the same code
    seeded = JointRandomResizedCrop(32, scale=(0.3, 1.0), generator=torch.Generator().manual_seed(5))
    drawn = BatchAugmentation(seeded).draw(1, 40, 30, torch.Generator().manual_seed(5)).boxes[0]
    assert seeded.crop_box(40, 30) == tuple(drawn.tolist())


def test_batch_augmentation_refuses_images_larger_than_the_output_and_bad_batches() -> None:
    augment = BatchAugmentation(JointRandomResizedCrop(32))
    with pytest.raises(ValueError, match="larger than the output size"):
        augment(coded_batch(2, 40, 32))
    with pytest.raises(ValueError, match="regions"):
        augment({**coded_batch(2, 32, 32), "regions": torch.zeros(2, 32, 32, dtype=torch.int32)})
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        augment({"image": torch.rand(3, 32, 32)})


@pytest.mark.parametrize("scale", [1, 1000], ids=["presence-table", "sparse-labels-sort"])
def test_relabel_contiguous_renumbers_each_image_in_order(scale: int) -> None:
    labels = torch.randint(-3, 40, (5, 9, 11), generator=torch.Generator().manual_seed(0)) * scale
    relabelled = relabel_contiguous(labels)
    for index in range(5):
        assert torch.equal(relabelled[index], reference_relabel(labels[index]))
    assert torch.equal(relabel_contiguous(labels.int()), relabelled)
