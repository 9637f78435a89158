"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) for timm CNNs and ViTs.

Written here (a few lines of torch) rather than called from pytorch-grad-cam, which min-max normalises every map
in NumPy and resizes it with OpenCV: these maps keep their raw scale (comparable across images and methods),
stay on the model's device, and share one forward/backward pass per batch with per-image targets. The Grad-CAM
map equals Captum's ``LayerGradCam`` (upsampled bilinearly) and the Grad-CAM++ weights equal
pytorch-grad-cam's; the tests check both.

Layer: by default the final feature map of a CNN (timm's ``forward_features`` output, the input of global
pooling) and, for a ViT, the input norm of the last block (``blocks.-1.norm1``; the final tokens carry no
gradient to the patches when the class token is pooled), with patch tokens reshaped to their grid.

Cost: the layers below the chosen one run without autograd (the backward pass starts at the logits and stops at
the layer, so nothing below it needs a graph); the layer's output is made a tensor that requires grad, as Captum
does, so frozen weights (``requires_grad_(False)``) and inputs without grad work, and the forward pass records
only the part above the layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from p2pvision.classifier import network_of, normalised
from p2pvision.config import PositiveInt
from p2pvision.errors import ConfigError
from p2pvision.explain.base import (
    EXPLAINERS,
    Attribution,
    Explainer,
    check_positive,
    order_from_scores,
    pixel_scores,
    present_players,
)
from p2pvision.regions import Partitioner


@runtime_checkable
class _FeaturesAndHead(Protocol):
    """A timm network split at its final feature map: ``forward_features`` then ``forward_head``."""

    def forward_features(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor) -> Tensor: ...


def tokens_to_grid(tokens: Tensor, vit: VisionTransformer) -> Tensor:
    """ViT tokens (B,T,D) -> patch feature maps (B,D,gh,gw), prefix tokens dropped."""
    grid = vit.patch_embed.grid_size
    patches = tokens[:, vit.num_prefix_tokens :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])


@contextlib.contextmanager
def graph_from_layer(network: nn.Module, name: str) -> Iterator[list[Tensor]]:
    """Inside the context, a forward pass of ``network`` run under ``torch.no_grad()`` turns autograd on at the
    output of layer ``name``: each output is recorded (in the list yielded) as a tensor that requires grad, and
    everything computed from it keeps its graph. The hook is removed on exit (``no_grad`` restores the mode)."""
    module = network.get_submodule(name)
    records: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Tensor | None:
        if not isinstance(output, Tensor):
            raise ConfigError(f"layer {name!r} returns {type(output).__name__}, not a tensor: choose another layer")
        torch.set_grad_enabled(True)
        if output.requires_grad:  # a shared layer called again, already in the graph
            records.append(output)
            return None
        leaf = output.detach().requires_grad_(True)
        records.append(leaf)
        return leaf.clone()  # what follows may work in place; the recorded leaf must stay as it is

    handle = module.register_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def gradcam_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM channel weights (B,C): the spatial mean of the gradients."""
    return gradients.mean(dim=(2, 3))


def gradcam_plus_plus_weights(activations: Tensor, gradients: Tensor) -> Tensor:
    """Grad-CAM++ channel weights (B,C), equation 19 of the paper (as pytorch-grad-cam computes them)."""
    squared = gradients**2
    cubed = squared * gradients
    summed = activations.sum(dim=(2, 3), keepdim=True)
    alpha = squared / (2 * squared + summed * cubed + 1e-6)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (gradients.clamp_min(0) * alpha).sum(dim=(2, 3))


@EXPLAINERS.register(aliases=("gradcam",))
class GradCAM(Explainer):
    """Grad-CAM: ``relu(sum_k w_k A_k)`` with ``w_k`` the mean gradient of the target logit over feature map
    ``A_k``, upsampled bilinearly to the image. Cost: one forward+backward pass per image."""

    name = "grad_cam"
    backward = True

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module | None = None,
        partitioner: Partitioner | None = None,
        batch_size: PositiveInt = 32,
    ) -> None:
        super().__init__(model, partitioner)
        network = network_of(self.model)
        if isinstance(layer, nn.Module):  # a module of the model (``layer=model.layer4``), kept by its name
            layer = next((name for name, module in network.named_modules() if module is layer and name), None)
            if layer is None:
                raise ConfigError("the layer module given to Grad-CAM is not a submodule of the explained model")
        self.layer = layer
        self.batch_size = check_positive("batch_size", batch_size)
        if layer is not None:
            try:
                network.get_submodule(layer)
            except AttributeError as error:
                raise ConfigError(f"model has no layer {layer!r}: {error}") from error
        elif not isinstance(network, VisionTransformer) and not hasattr(network, "forward_features"):
            raise ConfigError("Grad-CAM needs layer=... for models without timm's forward_features/forward_head")

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradcam_weights(activations, gradients)

    def _layer_name(self) -> str | None:
        network = network_of(self.model)
        if self.layer is None and isinstance(network, VisionTransformer):
            return f"blocks.{len(network.blocks) - 1}.norm1"
        return self.layer

    def activations_and_logits(self, images: Tensor, args: tuple[Any, ...] = ()) -> tuple[Tensor, Tensor]:
        """The chosen layer's output (a tensor that requires grad) and the logits computed from it with autograd, in
        one forward pass whose layers below the chosen one run without autograd; ``args``: extra arguments of the
        model's forward."""
        network = network_of(self.model)
        name = self._layer_name()
        if name is None:
            if not isinstance(network, _FeaturesAndHead):
                raise ConfigError(f"{type(network).__name__} has no timm forward_features/forward_head: name a layer")
            if args:
                raise ConfigError("additional_forward_args need a named layer (layer=...): the default one runs "
                                  "timm's forward_features/forward_head, which take none")  # fmt: skip
            with torch.no_grad():
                features = network.forward_features(normalised(self.model, images))
            features.requires_grad_(True)
            with torch.enable_grad():
                return features, network.forward_head(features.clone())
        with graph_from_layer(network, name) as records, torch.no_grad():
            logits = self.model(images, *args)
        if not records:
            raise ConfigError(f"layer {name!r} is not used by the model's forward pass: choose another layer")
        return records[-1], logits

    def layer_maps(
        self, images: Tensor, target: Tensor | None, args: tuple[Any, ...] = ()
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Class activation maps at the layer's resolution (B,h,w), the targets (B,) and the top-1 classes (B,)."""
        with torch.enable_grad():
            activations, logits = self.activations_and_logits(images.detach(), args)
            predicted = logits.detach().argmax(dim=1)
            if target is None:
                target = predicted
            (gradients,) = torch.autograd.grad(logits.gather(1, target.view(-1, 1)).sum(), activations)
        activations, gradients = activations.detach(), gradients.detach()
        network = network_of(self.model)
        if activations.ndim == 3 and isinstance(network, VisionTransformer):
            activations, gradients = tokens_to_grid(activations, network), tokens_to_grid(gradients, network)
        if activations.ndim != 4:
            raise ConfigError(f"layer output must be a (B,C,h,w) feature map, got shape {tuple(activations.shape)}")
        weights = self.channel_weights(activations, gradients)
        return F.relu((weights[:, :, None, None] * activations).sum(dim=1)), target, predicted

    def _attribute(self, images: Tensor, regions: Tensor, target: int | Tensor | None) -> Attribution:
        batch = images.shape[0]
        if target is not None:
            target = torch.as_tensor(target, dtype=torch.int64, device=images.device).expand(batch).clone()
        maps, targets, predictions = [], [], []
        for start in range(0, batch, self.batch_size):
            part = None if target is None else target[start : start + self.batch_size]
            index = torch.arange(start, min(start + self.batch_size, batch), device=images.device)
            args = self.forward_args_for(index, batch)
            layer_map, chosen, predicted = self.layer_maps(images[start : start + self.batch_size], part, args)
            self.advance(len(index))
            maps.append(F.interpolate(layer_map.unsqueeze(1), size=images.shape[2:], mode="bilinear").squeeze(1))
            targets.append(chosen)
            predictions.append(predicted)
        pixel_map = torch.cat(maps)
        scores = pixel_scores(pixel_map, regions)
        return Attribution(
            scores=scores,
            target=torch.cat(targets),
            predicted=torch.cat(predictions),
            evaluations=batch,
            order=order_from_scores(scores, present_players(regions)),
            pixel_map=pixel_map,
        )

    @property
    def params(self) -> dict[str, Any]:
        return {**super().params, "layer": self._layer_name() or "forward_features"}


@EXPLAINERS.register()
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: channel weights from positive gradients with per-location coefficients (equation 19)."""

    name = "grad_cam_pp"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        return gradcam_plus_plus_weights(activations, gradients)
