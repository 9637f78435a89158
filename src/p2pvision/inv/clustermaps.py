"""INV layer-wise cluster maps (Bianchi et al., IJCAI 2024; ``../shared/spec/explainers.md``, section INV).

For one image, a target class c and a convolutional layer with feature maps ``A_k`` (k = 1..K):

1. channel weights from guided gradients of the logit: ``alpha_k = mean_ij 1[A>0] 1[dy/dA>0] dy/dA`` and
   ``w_k = 100 alpha_k / sum alpha`` (percent of the layer's positive evidence);
2. channels below ``channel_share`` times the uniform share (``0.896 * 100 / K`` percent) are dropped;
3. each kept map is flattened, min-max normalised and embedded with PCA (at most 50 dimensions), then t-SNE
   to 2-d (``embedding="pca"``, or fewer than 5 kept channels: a 2-d PCA only);
4. agglomerative Ward clustering of the embedding, the number of clusters in 3..8 chosen by silhouette score
   (with 3 or fewer kept channels each is its own cluster);
5. a cluster weighs the sum of its members' weights; clusters below ``max(max_w / 3, mean_w / 2)`` are dropped;
6. a cluster map is the weight-averaged map of its members. Since ``W_c * map_c = sum_{k in c} w_k A_k``, the
   weighted sum of a layer's cluster maps is its (guided-gradient) Grad-CAM up to the dropped channels and
   clusters and the final ReLU. For display, maps are ReLU'd, upsampled bilinearly to the image and smoothed
   with a Gaussian of half the layer's stride.

Models: any timm CNN wrapped as :class:`~p2pvision.models.backbones.ImageClassifier` (the offline
EfficientNet-Lite0, a P2P model's ``.classifier``) or any module whose layers are named submodules. By default
the last three stages of timm's ``feature_info`` are explained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from sklearn.cluster import AgglomerativeClustering
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from torch import Tensor, nn

from p2pvision.classifier import Classifier, capture, network_of
from p2pvision.errors import ConfigError

EMBEDDINGS = ("tsne", "pca")


@dataclass(frozen=True)
class InvConfig:
    """Parameters of the cluster-map computation; defaults follow the INV paper."""

    channel_share: float = 0.896  # keep channels with weight >= channel_share * 100 / K percent
    pca_dims: int = 50
    embedding: str = "tsne"  # "tsne" (PCA then t-SNE) or "pca" (2-d PCA only)
    perplexity: float = 30.0  # capped at (kept channels - 1) / 3
    min_clusters: int = 3
    max_clusters: int = 8
    smooth: bool = True  # Gaussian smoothing (sigma = stride / 2) of the upsampled maps
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.channel_share:
            raise ConfigError(f"channel_share must be >= 0, got {self.channel_share}")
        if self.embedding not in EMBEDDINGS:
            raise ConfigError(f"unknown embedding '{self.embedding}': choose one of {', '.join(EMBEDDINGS)}")
        if not 2 <= self.min_clusters <= self.max_clusters:
            raise ConfigError(
                f"need 2 <= min_clusters <= max_clusters, got {self.min_clusters} and {self.max_clusters}"
            )
        if self.pca_dims < 2:
            raise ConfigError(f"pca_dims must be >= 2, got {self.pca_dims}")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ClusterMap:
    """One cluster of channels of a layer: its weight (percent), members, and maps."""

    layer: str
    cluster: int  # index within the layer, by decreasing weight
    weight: float
    channels: list[int]
    kept: bool
    layer_map: np.ndarray  # (h, w) weight-averaged member maps, before ReLU
    pixel_map: np.ndarray  # (H, W) ReLU'd, upsampled and smoothed


@dataclass
class LayerClusters:
    """The decomposition of one layer: channel weights, kept channels, their embedding and clusters."""

    layer: str
    channel_weights: np.ndarray  # (K,) percent, >= 0, sums to 100 (0 everywhere without positive evidence)
    kept_channels: np.ndarray  # (n,) channel indices
    embedding: np.ndarray  # (n, 2)
    assignment: np.ndarray  # (n,) cluster index of each kept channel
    silhouette: dict[int, float]  # candidate cluster count -> silhouette score
    clusters: list[ClusterMap]  # all clusters, by decreasing weight; ``kept`` marks the survivors of pruning
    gradcam: np.ndarray  # (h, w) relu(sum_k w_k A_k) over all channels: the layer's guided-gradient Grad-CAM

    @property
    def kept_clusters(self) -> list[ClusterMap]:
        return [cluster for cluster in self.clusters if cluster.kept]


@dataclass
class ClusterMapResult:
    """Cluster maps of one image for one target class over several layers."""

    image: Tensor  # (3, H, W) in [0, 1]: the image as the model saw it
    target: int
    target_name: str
    probability: float  # softmax probability of the target
    top_classes: list[int]  # the model's top classes for this image, best first
    layers: list[LayerClusters]
    config: InvConfig = field(default_factory=InvConfig)


def default_layers(model: nn.Module, count: int = 3) -> list[str]:
    """The last ``count`` stages of a timm CNN (from its ``feature_info``), else its last ``count`` conv layers."""
    network = network_of(model)
    info = getattr(network, "feature_info", None)
    names: list[str] = []
    if info is not None:
        names = [entry["module"] for entry in info] if isinstance(info, list) else list(info.module_name())
    if not names:
        names = [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ConfigError("the model has no convolutional layers to explain: name layers with layers=[...]")
    return names[-count:]


def _check_layers(network: nn.Module, layers: Sequence[str]) -> None:
    if not layers:
        raise ConfigError("no layers to explain: name at least one")
    for name in layers:
        try:
            network.get_submodule(name)
        except AttributeError:
            suggestions = ", ".join(default_layers(network, 5)) if _has_conv(network) else "none"
            raise ConfigError(f"model has no layer '{name}': try one of {suggestions}") from None


def _has_conv(network: nn.Module) -> bool:
    return any(isinstance(module, nn.Conv2d) for module in network.modules())


def layer_activations(
    model: nn.Module, images: Tensor, layers: Sequence[str], target: int | None
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, int]:
    """One forward and backward pass: each layer's output and the gradient of the target logit with respect to
    it (each (1,K,h,w)), the logits, and the target (the top-1 class when None)."""
    network = network_of(model)
    _check_layers(network, layers)
    with capture(network, layers) as records, torch.enable_grad():
        logits = model(images.detach().requires_grad_(True))
        captured = {name: records[name][-1] for name in layers}
        chosen = int(logits[0].argmax()) if target is None else int(target)
        if not 0 <= chosen < logits.shape[1]:
            raise ConfigError(f"target class {chosen} is out of range: the model has {logits.shape[1]} classes")
        for name in layers:
            output = captured[name]
            if not isinstance(output, Tensor) or output.ndim != 4:
                shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
                raise ConfigError(f"layer '{name}' must output a (B,C,h,w) feature map, got {shape}")
        gradients = torch.autograd.grad(logits[0, chosen], [captured[name] for name in layers])
    activations = {name: captured[name].detach() for name in layers}
    return activations, dict(zip(layers, (g.detach() for g in gradients))), logits.detach(), chosen


def guided_channel_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """INV channel weights (K,) in percent: spatial means of ``1[A>0] 1[G>0] G``, normalised to sum to 100."""
    guided = np.where((activations > 0) & (gradients > 0), gradients, 0.0)
    alpha = guided.reshape(guided.shape[0], -1).mean(axis=1)
    total = alpha.sum()
    return 100.0 * alpha / total if total > 0 else np.zeros_like(alpha)


def embed_maps(maps: np.ndarray, config: InvConfig) -> np.ndarray:
    """(n, h, w) maps -> (n, 2): flatten, min-max normalise each, PCA (<= pca_dims), then t-SNE (or 2-d PCA)."""
    count = maps.shape[0]
    flat = maps.reshape(count, -1).astype(np.float64)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    flat = (flat - low) / np.where(high > low, high - low, 1.0)
    dims = min(config.pca_dims if config.embedding == "tsne" else 2, count, flat.shape[1])
    reduced = PCA(n_components=dims, random_state=config.seed).fit_transform(flat)
    if config.embedding == "pca" or count < 5:
        return np.pad(reduced, ((0, 0), (0, max(0, 2 - reduced.shape[1]))))[:, :2]
    perplexity = min(config.perplexity, (count - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=config.seed)
    return tsne.fit_transform(reduced)


def cluster_embedding(points: np.ndarray, config: InvConfig) -> tuple[np.ndarray, dict[int, float]]:
    """Ward clustering with the cluster count (min..max_clusters, below the point count) of best silhouette.

    Returns cluster indices per point and the silhouette score of each candidate count. With too few points for
    the smallest candidate, every point is its own cluster (no scores)."""
    count = points.shape[0]
    candidates = range(config.min_clusters, min(config.max_clusters, count - 1) + 1)
    scores: dict[int, float] = {}
    labellings: dict[int, np.ndarray] = {}
    for clusters in candidates:
        labels = AgglomerativeClustering(n_clusters=clusters, linkage="ward").fit_predict(points)
        labellings[clusters] = labels
        scores[clusters] = float(silhouette_score(points, labels)) if len(set(labels)) > 1 else -1.0
    if not scores:
        return np.arange(count), scores
    best = max(scores, key=lambda k: (scores[k], -k))  # ties: fewer clusters
    return labellings[best], scores


def _upsample(layer_map: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    tensor = torch.from_numpy(np.maximum(layer_map, 0).astype(np.float32))[None, None]
    pixels = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    if smooth:
        stride = size[0] / layer_map.shape[0]
        pixels = gaussian_filter(pixels, sigma=stride / 2) if stride > 1 else pixels
    return np.maximum(pixels, 0).astype(np.float32)


def decompose_layer(
    layer: str,
    activations: np.ndarray,
    gradients: np.ndarray,
    image_size: tuple[int, int],
    config: InvConfig | None = None,
) -> LayerClusters:
    """Steps 1-6 on one layer's activations and gradients (K, h, w) for one image."""
    config = config or InvConfig()
    activations = np.asarray(activations, dtype=np.float64)
    channels = activations.shape[0]
    weights = guided_channel_weights(activations, np.asarray(gradients, dtype=np.float64))
    gradcam = np.maximum(np.tensordot(weights, activations, axes=1), 0)
    kept = np.flatnonzero((weights > 0) & (weights >= config.channel_share * 100.0 / channels))
    if kept.size == 0:
        empty = np.zeros((0, 2))
        return LayerClusters(layer, weights, kept, empty, np.zeros(0, int), {}, [], gradcam)
    embedding = embed_maps(activations[kept], config)
    assignment, scores = cluster_embedding(embedding, config)
    members = [kept[assignment == label] for label in np.unique(assignment)]
    totals = [float(weights[m].sum()) for m in members]
    order = np.argsort(-np.asarray(totals), kind="stable")
    renumber = np.empty(len(order), dtype=int)
    renumber[order] = np.arange(len(order))
    threshold = max(max(totals) / 3, float(np.mean(totals)) / 2)
    clusters = []
    for new, old in enumerate(order):
        channels_in = members[old]
        layer_map = np.tensordot(weights[channels_in], activations[channels_in], axes=1) / totals[old]
        clusters.append(
            ClusterMap(
                layer=layer,
                cluster=new,
                weight=totals[old],
                channels=[int(c) for c in channels_in],
                kept=totals[old] >= threshold,
                layer_map=layer_map.astype(np.float32),
                pixel_map=_upsample(layer_map, image_size, config.smooth),
            )
        )
    return LayerClusters(layer, weights, kept, embedding, renumber[assignment], scores, clusters, gradcam)


def cluster_maps(
    model: nn.Module,
    image: Tensor,
    target: int | None = None,
    layers: Sequence[str] | None = None,
    config: InvConfig | None = None,
    top: int = 6,
) -> ClusterMapResult:
    """INV cluster maps of ``image`` (3,H,W) in [0,1] for class ``target`` (None: the model's top-1) at
    ``layers`` (default: :func:`default_layers`). ``top`` of the model's best classes are recorded (the
    labelling app offers them as guesses)."""
    config = config or InvConfig()
    if image.ndim != 3 or image.shape[0] != 3 or not image.dtype.is_floating_point:
        raise ConfigError(f"image must be a float tensor (3, H, W) in [0, 1], got {image.dtype} {tuple(image.shape)}")
    layers = list(layers) if layers else default_layers(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    training = model.training
    model.eval()
    try:
        activations, gradients, logits, chosen = layer_activations(model, image[None].to(device), layers, target)
    finally:
        model.train(training)
    size = (int(image.shape[1]), int(image.shape[2]))
    decompositions = [
        decompose_layer(name, activations[name][0].cpu().numpy(), gradients[name][0].cpu().numpy(), size, config)
        for name in layers
    ]
    probabilities = torch.softmax(logits[0].float(), dim=0)
    names = model.class_names if isinstance(model, Classifier) else None
    return ClusterMapResult(
        image=image.detach().cpu(),
        target=chosen,
        target_name=names[chosen] if names else f"class {chosen}",
        probability=float(probabilities[chosen]),
        top_classes=[int(i) for i in torch.argsort(probabilities, descending=True)[:top]],
        layers=decompositions,
        config=config,
    )
