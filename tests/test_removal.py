"""Removal strategies: kept pixels stay bit-identical, holes get the documented fill, soft masks are
differentiable, inpainting equals the library called directly, token dropping equals the ViT on kept tokens."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch
from scipy.ndimage import gaussian_filter
from skimage import data
from skimage.restoration import inpaint_biharmonic
from skimage.transform import resize

from p2pvision.errors import ConfigError
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import make_partitioner, partition_batch
from p2pvision.removal import (
    BlackFill,
    BlurFill,
    CallableFill,
    MeanColourFill,
    RegionMeanFill,
    TeleaInpaint,
    TokenDropping,
    make_removal,
    removal_names,
)

# learned and lama need a weights file: tests/test_inpainter.py checks their known pixels on trained/tiny models.
PIXEL_FILLS = [name for name in removal_names() if name not in ("callable", "token_drop", "learned", "lama")]
HOLE_INDEPENDENT = ["black", "grey", "mean", "constant", "region_mean", "blur", "noise"]


def photos(size: int = 32) -> torch.Tensor:
    arrays = [resize(image, (size, size), anti_aliasing=True) for image in (data.chelsea(), data.coffee())]
    return torch.tensor(np.stack(arrays), dtype=torch.float32).permute(0, 3, 1, 2).contiguous()


def masks(size: int = 32) -> torch.Tensor:
    keep = torch.ones(2, size, size, dtype=torch.bool)
    keep[0, 8:20, 4:16] = False
    keep[1, :, size // 2 :] = False
    keep[1, 2:5, 2:5] = False
    return keep


def regions_of(images: torch.Tensor) -> torch.Tensor:
    return partition_batch(images, make_partitioner("grid", grid=4))


@pytest.mark.parametrize("name", PIXEL_FILLS)
def test_hard_removal_keeps_pixels_bit_identical_and_fills_only_the_hole(name: str) -> None:
    images, keep = photos(), masks()
    regions = regions_of(images)
    removal = make_removal(name)
    out = removal(images, keep, regions)
    fill = removal.fill(images, keep, regions)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.equal(out.permute(0, 2, 3, 1)[keep], images.permute(0, 2, 3, 1)[keep])
    assert torch.equal(out.permute(0, 2, 3, 1)[~keep], fill.permute(0, 2, 3, 1)[~keep])
    assert not torch.allclose(out.permute(0, 2, 3, 1)[~keep], images.permute(0, 2, 3, 1)[~keep], atol=1e-3)


def test_constant_fills_have_their_documented_colours() -> None:
    images, keep = photos(), masks()
    hole = (~keep).unsqueeze(1).expand_as(images)
    assert torch.all(make_removal("black")(images, keep)[hole] == 0)
    assert torch.all(make_removal("grey")(images, keep)[hole] == 0.5)
    model = create_classifier("test_resnet")
    mean_fill = make_removal("mean", model=model)
    assert isinstance(mean_fill, MeanColourFill)
    normalised = model.normalize(mean_fill(images, keep))
    assert torch.allclose(normalised[hole], torch.zeros(()), atol=1e-6)


def test_region_mean_fill_equals_a_loop_reference() -> None:
    images, keep = photos(), masks()
    regions = regions_of(images)
    out = RegionMeanFill()(images, keep, regions)
    for b in range(len(images)):
        for label in regions[b].unique():
            inside = (regions[b] == label) & ~keep[b]
            mean = images[b][:, regions[b] == label].mean(dim=1)
            assert torch.allclose(out[b][:, inside], mean[:, None].expand(-1, int(inside.sum())), atol=1e-6)
    with pytest.raises(ConfigError):
        RegionMeanFill()(images, keep)


def test_blur_fill_equals_scipy_gaussian_filter() -> None:
    images = photos()
    fill = BlurFill(sigma=2.0).fill(images, None)
    reference = gaussian_filter(images.numpy(), sigma=(0, 0, 2, 2), mode="nearest", truncate=3.0)
    assert np.allclose(fill.numpy(), reference, atol=1e-5)


def test_noise_fill_is_seeded() -> None:
    images, keep = photos(), masks()
    first, again = make_removal("noise", seed=3)(images, keep), make_removal("noise", seed=3)(images, keep)
    other = make_removal("noise", seed=4)(images, keep)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_inpainting_equals_the_libraries_called_directly_in_parallel_and_serially() -> None:
    images, keep = photos(), masks()
    for b in range(2):
        image = images[b].permute(1, 2, 0).numpy()
        hole = (~keep[b]).numpy()
        pixels = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
        for name, flag in (("telea", cv2.INPAINT_TELEA), ("ns", cv2.INPAINT_NS)):
            expected = cv2.inpaint(pixels, hole.astype(np.uint8), 3.0, flag).astype(np.float32) / 255
            for workers in (1, 2):
                got = make_removal(name, num_workers=workers)(images, keep)[b].permute(1, 2, 0).numpy()
                assert np.array_equal(got[hole], expected[hole])
        expected = inpaint_biharmonic(image, hole, channel_axis=-1)
        got = make_removal("biharmonic")(images, keep)[b].permute(1, 2, 0).numpy()
        assert np.allclose(got[hole], expected[hole], atol=1e-6)


def test_inpainting_with_nothing_kept_uses_the_empty_value_and_with_nothing_removed_is_the_image() -> None:
    images = photos()
    nothing = torch.zeros(2, 32, 32, dtype=torch.bool)
    assert torch.all(TeleaInpaint(empty_value=0.25)(images, nothing) == 0.25)
    assert torch.equal(TeleaInpaint()(images, ~nothing), images)


def test_callable_fill_receives_image_and_hole() -> None:
    images, keep = photos(), masks()
    seen = []

    def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        seen.append(hole.copy())
        return np.full_like(image, 0.75)

    out = CallableFill(fill)(images, keep)
    assert len(seen) == 2 and np.array_equal(seen[1], (~keep[1]).numpy())
    assert torch.all(out.permute(0, 2, 3, 1)[~keep] == 0.75)
    with pytest.raises(ConfigError):
        CallableFill("not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", HOLE_INDEPENDENT)
def test_soft_masks_blend_and_are_differentiable(name: str) -> None:
    images = photos().requires_grad_(True)
    regions = regions_of(images)
    soft = torch.rand(2, 32, 32, requires_grad=True)
    removal = make_removal(name)
    out = removal(images, soft, regions)
    fill = removal.fill(images, soft, regions)
    assert torch.allclose(out, images * soft[:, None] + fill * (1 - soft[:, None]), atol=1e-6)
    out.sum().backward()
    assert images.grad is not None and soft.grad is not None
    assert images.grad.abs().sum() > 0 and soft.grad.abs().sum() > 0
    ones = torch.ones(2, 32, 32)
    assert torch.equal(removal(images.detach(), ones, regions), images.detach())


def test_soft_masks_with_inpainting_fill_the_half_removed_pixels() -> None:
    images, keep = photos(), masks()
    soft = torch.where(keep, 0.8, 0.2).requires_grad_(True)
    out = TeleaInpaint()(images, soft)
    fill = TeleaInpaint().fill(images, keep)
    assert torch.allclose(out, images * soft[:, None] + fill * (1 - soft[:, None]), atol=1e-6)
    out.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_make_removal_rejects_unknown_names_and_parameters() -> None:
    with pytest.raises(ConfigError, match="unknown removal"):
        make_removal("paint")
    with pytest.raises(ConfigError, match="invalid parameters"):
        make_removal("black", colour=1)
    with pytest.raises(ConfigError):
        make_removal("blur", sigma=0)
    with pytest.raises(ValueError):
        BlackFill()(photos(), masks()[:, :16])
    assert repr(BlurFill(3)) == "BlurFill(sigma=3.0)"


def _vit_on_kept_tokens_by_hand(vit: torch.nn.Module, image: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    tokens = vit._pos_embed(vit.patch_embed(image[None]))
    prefix = vit.num_prefix_tokens
    x = torch.cat([tokens[:, :prefix], tokens[:, prefix:][:, kept]], dim=1)
    x = vit.norm(vit.blocks(vit.norm_pre(x)))
    return vit.forward_head(x)[0]


@pytest.mark.parametrize("global_pool", ["token", "avg"])
def test_token_dropping_equals_the_vit_on_the_kept_tokens_only(global_pool: str) -> None:
    model = create_classifier("test_vit", global_pool=global_pool, img_size=64).eval()  # 4 x 4 patches of 16 px
    images = torch.rand(3, 3, 64, 64)
    keep = torch.zeros(3, 64, 64, dtype=torch.bool)
    keep[0, :16, :48] = True  # 1 x 3 patches
    keep[1, 32:, :] = True  # half the image
    keep[1, 32:42, :] = False  # patch row 2 keeps 6 of 16 pixel rows: below the 0.5 threshold, dropped
    keep[2] = True  # everything
    dropping = TokenDropping()
    with torch.no_grad():
        logits = dropping.logits(model, images, keep)
        kept = dropping.kept_tokens(model, keep)
        assert kept.sum(1).tolist() == [3, 4, 16]
        for b in range(3):
            expected = _vit_on_kept_tokens_by_hand(model.model, model.normalize(images[b : b + 1])[0], kept[b])
            assert torch.allclose(logits[b], expected, atol=1e-5)
        assert torch.allclose(logits[2], model(images[2:])[0], atol=1e-5)


def test_token_dropping_rejects_models_that_are_not_vits() -> None:
    with pytest.raises(ConfigError, match="VisionTransformer"):
        TokenDropping().logits(timm.create_model("test_resnet"), torch.rand(1, 3, 32, 32), masks()[:1])
