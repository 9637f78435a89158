"""INV cluster maps: guided-gradient weights, pruning, clustering, the Grad-CAM decomposition, reveal images,
folders, and the supported model kinds (offline EfficientNet-Lite0, a timm CNN, a P2P classifier)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import nn

from p2pvision.errors import ConfigError
from p2pvision.explain import GradCAM
from p2pvision.inv.clustermaps import (
    InvConfig,
    cluster_maps,
    decompose_layer,
    default_layers,
    guided_channel_weights,
)
from p2pvision.inv.reveal import REVEAL_PERCENTS, reveal_image, reveal_masks
from p2pvision.inv.runs import find_runs, load_run, save_cluster_maps
from p2pvision.models.backbones import create_classifier

SIDE = 8


def _blob(row: float, col: float, sigma: float = 1.3) -> np.ndarray:
    rows, cols = np.mgrid[0:SIDE, 0:SIDE]
    return np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * sigma**2))


class ToyCNN(nn.Module):
    """A 'layer' whose K feature maps are noisy copies of a few blobs, global average pooling and a linear head
    with the given (positive) weights. Maps are strictly positive and so is the gradient of every logit, so
    the guided-gradient weights equal Grad-CAM's mean gradients (up to normalisation)."""

    def __init__(self, maps: np.ndarray, head: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("maps", torch.tensor(maps, dtype=torch.float32))
        self.gain = nn.Parameter(torch.ones(()))  # so that the layer output takes part in autograd
        self.features = nn.Identity()
        self.head = nn.Linear(maps.shape[0], head.shape[0], bias=False)
        self.head.weight.data = torch.tensor(head, dtype=torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        activations = self.features(self.gain * self.maps[None].expand(images.shape[0], -1, -1, -1))
        return self.head(activations.mean(dim=(2, 3)))


def toy_case(group_sizes: list[int], channel_logit_weights: list[float]) -> tuple[ToyCNN, list[list[int]]]:
    rng = np.random.default_rng(0)
    centres = [(1.5, 1.5), (6.0, 2.0), (3.5, 6.0), (6.5, 6.5)]
    maps, groups = [], []
    for group, size in enumerate(group_sizes):
        groups.append(list(range(len(maps), len(maps) + size)))
        for _ in range(size):
            maps.append(0.05 + _blob(*centres[group]) * rng.uniform(0.8, 1.2) + 0.02 * rng.random((SIDE, SIDE)))
    head = np.stack([np.asarray(channel_logit_weights), np.ones(len(maps))])
    return ToyCNN(np.stack(maps), head), groups


def test_cluster_maps_sum_to_the_layers_grad_cam_and_recover_the_constructed_groups() -> None:
    model, groups = toy_case([4, 4, 4], list(np.linspace(0.95, 1.05, 12)))
    image = torch.rand(3, 32, 32)
    result = cluster_maps(model, image, target=0, layers=["features"])
    layer = result.layers[0]
    head = model.head.weight.detach().numpy()[0]
    np.testing.assert_allclose(layer.channel_weights, 100 * head / head.sum(), rtol=1e-5)
    assert layer.kept_channels.tolist() == list(range(12))  # no channel below 0.896 x the uniform share
    assert sorted(sorted(c.channels) for c in layer.clusters) == groups  # t-SNE + Ward + silhouette find them
    assert max(layer.silhouette, key=layer.silhouette.get) == 3 and all(c.kept for c in layer.clusters)
    summed = sum(c.weight * c.layer_map for c in layer.clusters)
    reference, target, _ = GradCAM(model, layer="features").layer_maps(image[None], torch.tensor([0]))
    scale = 100 / (head.sum() / SIDE**2)  # percent weights vs Grad-CAM's raw mean gradients
    assert int(target) == 0
    np.testing.assert_allclose(summed, scale * reference[0].numpy(), rtol=1e-4)
    np.testing.assert_allclose(layer.gradcam, summed, rtol=1e-4)
    weights = [c.weight for c in layer.clusters]
    assert weights == sorted(weights, reverse=True) and sum(weights) == pytest.approx(100, abs=1e-4)


def test_channel_and_cluster_pruning_drop_exactly_their_share_of_grad_cam() -> None:
    # 12 channels: six strong (group 0), four medium (group 1), two just above the channel threshold (group 2)
    # and one far below it (pruned as a channel). Group 2 falls under max(max_w / 3, mean_w / 2).
    logit_weights = [9.0] * 6 + [8.0] * 4 + [7.0] * 2 + [0.5]
    model, groups = toy_case([6, 4, 3], logit_weights)
    result = cluster_maps(model, torch.rand(3, 16, 16), target=0, layers=["features"])
    layer = result.layers[0]
    threshold = 0.896 * 100 / 13
    assert layer.kept_channels.tolist() == [k for k in range(13) if layer.channel_weights[k] >= threshold] == list(
        range(12)
    )
    clusters = {tuple(sorted(c.channels)): c for c in layer.clusters}
    assert set(clusters) == {tuple(range(6)), tuple(range(6, 10)), (10, 11)}
    assert not clusters[(10, 11)].kept and clusters[tuple(range(6))].kept and clusters[tuple(range(6, 10))].kept
    maps = model.maps.numpy().astype(np.float64)
    all_clusters = sum(c.weight * c.layer_map for c in layer.clusters)
    kept_channels = np.tensordot(layer.channel_weights[:12], maps[:12], axes=1)
    np.testing.assert_allclose(all_clusters, kept_channels, rtol=1e-4)
    np.testing.assert_allclose(
        np.maximum(all_clusters + layer.channel_weights[12] * maps[12], 0), layer.gradcam, rtol=1e-4
    )
    kept = sum(c.weight * c.layer_map for c in layer.kept_clusters)
    pruned = np.tensordot(layer.channel_weights[10:12], maps[10:12], axes=1)
    np.testing.assert_allclose(kept, kept_channels - pruned, rtol=1e-4)
    for cluster in layer.kept_clusters:
        assert cluster.pixel_map.shape == (16, 16) and cluster.pixel_map.min() >= 0


def test_guided_weights_count_only_positive_activations_with_positive_gradients() -> None:
    activations = np.array([[[1.0, -1.0], [2.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[-1.0, -2.0], [-1.0, 0.0]]])
    gradients = np.array([[[1.0, 5.0], [-3.0, 7.0]], [[0.5, 0.5], [-1.0, 0.5]], [[9.0, 9.0], [9.0, 9.0]]])
    alpha = np.array([1.0 / 4, 1.5 / 4, 0.0])
    np.testing.assert_allclose(guided_channel_weights(activations, gradients), 100 * alpha / alpha.sum())
    assert guided_channel_weights(-activations[1:2], gradients[1:2]).tolist() == [0.0]
    empty = decompose_layer("l", -np.ones((4, 3, 3)), np.ones((4, 3, 3)), (6, 6))
    assert empty.clusters == [] and empty.kept_channels.size == 0 and not empty.gradcam.any()


def test_reveal_masks_are_exact_nested_top_percentages() -> None:
    rng = np.random.default_rng(1)
    heat = rng.random((50, 40))
    masks = reveal_masks(heat)
    assert masks.shape == (6, 50, 40)
    for step, q in enumerate(REVEAL_PERCENTS):
        count = round(q / 100 * 2000)
        assert masks[step].sum() == count
        assert heat[masks[step]].min() >= heat[~masks[step]].max()  # the top of the map, nothing else
        if step:
            assert (masks[step - 1] <= masks[step]).all()  # each step adds pixels to the previous one
    sparse = np.zeros((10, 10))
    sparse[0, :5] = [5, 4, 3, 2, 1]
    assert reveal_masks(sparse, (2, 30))[:, 0, :5].sum(axis=1).tolist() == [2, 5]  # never reveals zeros
    image = rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)
    shown = reveal_image(image, reveal_masks(sparse, (30,))[0])
    assert (shown[0, :5] == image[0, :5]).all() and (shown[1:] == 128).all()
    with pytest.raises(ValueError, match="percentages"):
        reveal_masks(heat, (120,))


@pytest.fixture(scope="module")
def lite0():
    return create_classifier("tf_efficientnet_lite0", weights="package").eval()


def test_offline_efficientnet_on_a_bundled_photo_writes_a_complete_folder(lite0, tmp_path) -> None:
    image = lite0.preprocess(Image.fromarray(data.chelsea()))
    result = cluster_maps(lite0, image)
    assert result.target_name in {"tabby", "tiger cat", "Egyptian cat"} and len(result.top_classes) == 6
    assert [layer.layer for layer in result.layers] == ["blocks.2", "blocks.4", "blocks.6"]
    for layer in result.layers:
        assert layer.channel_weights.sum() == pytest.approx(100, rel=1e-5)
        assert 3 <= len(layer.clusters) <= 8 and layer.kept_clusters
    folder = save_cluster_maps(result, tmp_path / "cat", lite0.class_names, "cat.png", "tf_efficientnet_lite0")
    run = load_run(folder)
    record = run.record
    assert record["target_name"] == result.target_name and record["choices"][0] == result.target_name
    arrays = run.arrays()
    for index, layer in enumerate(record["layers"]):
        for cluster in layer["clusters"]:
            key = f"L{index}_C{cluster['cluster']}"
            assert arrays[f"{key}_pixel"].shape == (224, 224)
            if cluster["kept"]:
                assert cluster["task"] == f"{record['id']}-L{index}-C{cluster['cluster']}"
                assert len(cluster["reveal"]) == 6 and all((folder / name).is_file() for name in cluster["reveal"])
                shown = np.asarray(Image.open(folder / cluster["reveal"][0]))
                assert (shown != 128).any(axis=2).mean() <= 0.021
    for name in ("image.png", "overview.png", "embedding.png"):
        assert Image.open(folder / name).size[0] >= 224
    assert [r.id for r in find_runs([tmp_path])] == [record["id"]]
    json.loads((folder / "clustermaps.json").read_text())


def test_any_timm_cnn_and_a_p2p_classifier(tmp_path) -> None:
    from p2pvision.models.p2p import P2PConfig, P2PModel, load_p2p, save_p2p

    cnn = create_classifier("test_resnet", weights=None, num_classes=5).eval()
    assert default_layers(cnn) == ["layer2", "layer3", "layer4"]
    result = cluster_maps(cnn, torch.rand(3, 64, 64), target=3, config=InvConfig(embedding="pca"))
    assert result.target == 3 and [layer.gradcam.shape for layer in result.layers] == [(8, 8), (4, 4), (2, 2)]
    config = P2PConfig(num_classes=4, image_size=32, classifier="test_resnet", selector_backbone="test_resnet",
                       selector_levels=(1, 2), head_channels=8, max_regions=16)  # fmt: skip
    save_p2p(P2PModel(config), tmp_path / "p2p")
    classifier = load_p2p(tmp_path / "p2p").classifier
    p2p_result = cluster_maps(classifier, torch.rand(3, 32, 32), layers=["layer1", "layer3"])
    assert [layer.layer for layer in p2p_result.layers] == ["layer1", "layer3"]
    assert p2p_result.target_name == classifier.class_names[p2p_result.target]
    with pytest.raises(ConfigError, match="no layer 'layer9'.*layer4"):
        cluster_maps(cnn, torch.rand(3, 32, 32), layers=["layer9"])
    with pytest.raises(ConfigError, match="out of range"):
        cluster_maps(cnn, torch.rand(3, 32, 32), target=7)
    with pytest.raises(ConfigError, match="embedding"):
        InvConfig(embedding="umap")
