"""The explanation contract, checked for every registered explainer, P2P and every trained baseline: one call,
``explain(images, target=None, regions=None) -> Explanation``, with the same shapes, dtypes and device, targets as
an int, a tensor or None, per-image results that do not depend on the batch, counted evaluations, determinism, and
a round trip through the saved file."""

from __future__ import annotations

import json

import pytest
import torch

from p2pvision.baselines import PixelMaskClassifier, RealXModel, SoftMaskModel
from p2pvision.explain import EXPLAINERS
from p2pvision.explanation import Explains, Explanation
from p2pvision.models.backbones import create_classifier
from p2pvision.models.p2p import P2PConfig, P2PModel
from p2pvision.regions import GridPartitioner, make_partitioner, partition_batch

SIZE, CLASSES = 32, 10
# Small budgets: the contract does not depend on them.
CHEAP = {
    "shapley": {"num_permutations": 2},
    "kernel_shap": {"num_samples": 24},
    "lime": {"num_samples": 24},
    "sliding_patch": {"patch": 8, "stride": 8},
    "meaningful_perturbation": {"steps": 3, "mask_size": 8},
    "rise": {"num_masks": 24},
    "captum": {"n_steps": 4},
}
P2P_SETTINGS = {"classifier": "test_resnet", "selector_backbone": "test_resnet", "selector_levels": (1, 2),
                "head_channels": 8, "max_regions": 16, "partition": {"name": "grid", "grid": 4}, "fixed_tau": 0.25,
                "num_classes": CLASSES, "image_size": SIZE}  # fmt: skip


def build(name: str) -> Explains:
    """The method ``name`` (a registered explainer, ``p2p`` or a baseline kind) on a tiny seeded model."""
    torch.manual_seed(0)
    if name == "p2p":
        return P2PModel(P2PConfig(**P2P_SETTINGS)).eval()
    baselines = {cls.kind: cls for cls in (PixelMaskClassifier, RealXModel, SoftMaskModel)}
    if name in baselines:
        return baselines[name](P2PConfig(**P2P_SETTINGS)).eval()
    model = create_classifier("test_vit" if name == "rollout" else "test_resnet", num_classes=CLASSES,
                              **({"img_size": SIZE} if name == "rollout" else {})).eval()  # fmt: skip
    return EXPLAINERS.create(name, model, partitioner=GridPartitioner(4), **CHEAP.get(name, {}))


METHODS = [*EXPLAINERS.names(), "p2p", "blackbox_pixel", "realx", "soft_mask"]


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    return images, partition_batch(images, make_partitioner("grid", grid=4))


def test_every_explainer_module_is_registered_and_covered() -> None:
    assert {"moxi", "moxi_minus", "shapley", "kernel_shap", "lime", "sliding_patch", "meaningful_perturbation",
            "grad_cam", "grad_cam_pp", "rollout", "rise"} <= set(EXPLAINERS.names())  # fmt: skip
    assert EXPLAINERS.resolve("sp") == "sliding_patch" and EXPLAINERS.resolve("mp") == "meaningful_perturbation"


@pytest.mark.parametrize("name", METHODS)
def test_contract(name: str, batch: tuple[torch.Tensor, torch.Tensor], tmp_path) -> None:
    images, regions = batch
    method = build(name)
    assert isinstance(method, Explains)
    result = method.explain(images, regions=regions)
    assert isinstance(result, Explanation) and len(result) == 3
    # shapes, dtypes, device
    assert result.predicted.dtype == torch.int64 and result.predicted.shape == (3,)
    assert result.target.dtype == torch.int64 and ((0 <= result.target) & (result.target < CLASSES)).all()
    assert result.pixel_map.shape == (3, SIZE, SIZE) and result.pixel_map.dtype.is_floating_point
    assert torch.isfinite(result.pixel_map).all()
    if result.regions is not None:
        assert result.regions.dtype == torch.int64 and result.regions.shape == (3, SIZE, SIZE)
        assert result.scores.shape[0] == 3 and result.scores.shape[1] >= int(result.regions.max()) + 1
    if result.order is not None:
        assert result.order.shape == result.scores.shape and result.order.dtype == torch.int64
    if result.keep is not None:
        assert result.keep.shape == (3, SIZE, SIZE) and ((result.keep >= 0) & (result.keep <= 1)).all()
    assert all(tensor.device == images.device for tensor in result.tensors().values())
    # the default target is the prediction; evaluations are counted per image
    assert torch.equal(result.target, result.predicted)
    assert result.evaluations.shape == (3,) and (result.evaluations >= 1).all()
    # target as an int and as a tensor
    as_int = method.explain(images, target=3, regions=regions)
    assert as_int.target.tolist() == [3, 3, 3] and torch.equal(as_int.predicted, result.predicted)
    chosen = torch.tensor([1, 2, 3])
    assert method.explain(images, target=chosen, regions=regions).target.tolist() == [1, 2, 3]
    # deterministic, and each image's result does not depend on its batch
    again = method.explain(images, regions=regions)
    assert torch.allclose(again.pixel_map, result.pixel_map, atol=1e-5)
    for index in range(3):
        alone = method.explain(images[index : index + 1], regions=regions[index : index + 1])
        assert torch.equal(alone.predicted, result.predicted[index : index + 1])
        assert torch.allclose(alone.pixel_map, result.pixel_map[index : index + 1], atol=1e-4, rtol=1e-3), index
        assert torch.allclose(alone.evaluations, result.evaluations[index : index + 1])
    # to the edge: strict JSON and a file that loads back without pickle
    json.loads(json.dumps(result.to_json(), allow_nan=False))
    loaded = Explanation.load(result.save(tmp_path / f"{name}.safetensors"))
    assert loaded.method == result.method and loaded.params == json.loads(json.dumps(result.params))
    for key, value in result.tensors().items():  # NaN where a value is undefined (MoXI's curve after early stopping)
        back = loaded.tensors()[key]
        assert back.dtype == value.dtype and torch.equal(back.isnan(), value.isnan()), key
        assert torch.equal(back.nan_to_num(0.0), value.nan_to_num(0.0)), key


@pytest.mark.parametrize("name", ["grad_cam", "p2p"])
def test_normalised_images_are_refused_with_one_line(name: str) -> None:
    images = (torch.rand(2, 3, SIZE, SIZE) - 0.5) / 0.25  # what an ImageNet-normalised batch looks like
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\] .*got values in \[-2.*: pass the images before"):
        build(name).explain(images)
