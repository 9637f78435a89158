"""Grad-CAM equals Captum's LayerGradCam, Grad-CAM++ weights equal pytorch-grad-cam's, and attention rollout
equals a hand computation from the ViT's own query/key projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from pytorch_grad_cam import GradCAMPlusPlus as ReferenceGradCAMPlusPlus

from p2pvision.errors import ConfigError
from p2pvision.explain import AttentionRollout, GradCAM, GradCAMPlusPlus
from p2pvision.explain.rollout import recorded_attention, rollout
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_classifier("test_resnet").eval()


def test_grad_cam_equals_captum_layer_grad_cam(resnet: torch.nn.Module) -> None:
    images = torch.rand(3, 3, 64, 64)
    targets = torch.tensor([1, 7, 3])
    result = GradCAM(resnet, partitioner=GridPartitioner(4)).explain(images, targets)
    reference = LayerGradCam(resnet, resnet.model.layer4).attribute(images, target=targets, relu_attributions=True)
    reference = LayerAttribution.interpolate(reference, (64, 64), "bilinear").squeeze(1).detach()
    assert reference.abs().max() > 0
    assert torch.allclose(result.pixel_map, reference, atol=1e-6 * float(reference.abs().max()) + 1e-9)
    assert result.params["layer"] == "forward_features" and result.evaluations.sum() == 3
    assert torch.equal(result.target, targets)


def test_grad_cam_on_a_named_layer_equals_captum(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 64, 64)
    result = GradCAM(resnet, layer="layer3").explain(images, 4)
    reference = LayerGradCam(resnet, resnet.model.layer3).attribute(images, target=4, relu_attributions=True)
    reference = LayerAttribution.interpolate(reference, (64, 64), "bilinear").squeeze(1).detach()
    assert torch.allclose(result.pixel_map, reference, atol=1e-6 * float(reference.abs().max()) + 1e-9)
    with pytest.raises(ConfigError, match="no layer"):
        GradCAM(resnet, layer="layer9")


def test_grad_cam_plus_plus_weights_equal_pytorch_grad_cam(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 64, 64)
    explainer = GradCAMPlusPlus(resnet)
    with torch.enable_grad():
        activations, logits = explainer.activations_and_logits(images)
        target = logits.argmax(1)
        (gradients,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activations)
    ours = explainer.channel_weights(activations.detach(), gradients)
    reference = ReferenceGradCAMPlusPlus(resnet, target_layers=[resnet.model.layer4])
    try:
        expected = reference.get_cam_weights(
            images, [resnet.model.layer4], None, activations.detach().numpy(), gradients.numpy()
        )
    finally:
        reference.activations_and_grads.release()
    assert np.allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-7)
    maps, _, _ = explainer.layer_maps(images, target)
    expected_map = torch.relu((torch.from_numpy(expected)[:, :, None, None] * activations.detach()).sum(1))
    assert torch.allclose(maps, expected_map, rtol=1e-4, atol=1e-6)


def test_grad_cam_on_a_vit_uses_the_last_block_tokens() -> None:
    vit = create_classifier("test_vit", img_size=64).eval()
    result = GradCAM(vit, partitioner=GridPartitioner(4)).explain(torch.rand(2, 3, 64, 64))
    assert result.params["layer"] == "blocks.5.norm1"
    assert result.pixel_map.shape == (2, 64, 64) and result.scores.shape == (2, 16)
    assert (result.pixel_map >= 0).all() and result.pixel_map.sum() > 0


def _attention_by_hand(block: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    attention = block.attn
    batch, count, dim = tokens.shape
    qkv = attention.qkv(block.norm1(tokens)).reshape(batch, count, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = attention.q_norm(qkv[0]), attention.k_norm(qkv[1])
    return ((q * attention.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def test_rollout_equals_a_hand_computation() -> None:
    vit = create_classifier("test_vit", img_size=64).eval()
    images = torch.rand(2, 3, 64, 64)
    fused = [block.attn.fused_attn for block in vit.model.blocks]
    with torch.no_grad():
        with recorded_attention(vit.model) as attentions:
            vit(images)
        tokens = vit.model.norm_pre(vit.model._pos_embed(vit.model.patch_embed(vit.normalize(images))))
        expected = []
        for block in vit.model.blocks:
            expected.append(_attention_by_hand(block, tokens))
            tokens = block(tokens)
    assert [block.attn.fused_attn for block in vit.model.blocks] == fused
    assert len(attentions) == len(expected)
    for got, want in zip(attentions, expected):
        assert torch.allclose(got, want, atol=1e-5)
    eye = torch.eye(17)
    product = None
    for attention in expected:
        layer = (attention.mean(1) + eye) / 2
        layer = layer / layer.sum(-1, keepdim=True)
        product = layer if product is None else layer @ product
    assert torch.allclose(rollout(attentions), product, atol=1e-5)
    result = AttentionRollout(vit, partitioner=GridPartitioner(4)).explain(images)
    assert torch.allclose(result.scores, product[:, 0, 1:], atol=1e-5)  # one grid cell per 16 px patch
    assert result.evaluations.sum() == 2


def test_rollout_needs_a_vit(resnet: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="VisionTransformer"):
        AttentionRollout(resnet)


def test_grad_cam_works_on_a_model_whose_weights_are_frozen(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = GradCAM(resnet, partitioner=GridPartitioner(4)).explain(images).pixel_map
    for parameter in resnet.parameters():
        parameter.requires_grad_(False)
    try:
        frozen = GradCAM(resnet, partitioner=GridPartitioner(4)).explain(images).pixel_map
    finally:
        for parameter in resnet.parameters():
            parameter.requires_grad_(True)
    assert torch.allclose(frozen, expected, atol=1e-6)


def test_grad_cam_takes_its_layer_as_a_module_or_a_name(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    module = resnet.model.layer1
    by_module = GradCAM(resnet, layer=module, partitioner=GridPartitioner(4))
    assert by_module.layer == "layer1" and by_module.params["layer"] == "layer1"
    by_name = GradCAM(resnet, layer="layer1", partitioner=GridPartitioner(4))
    assert torch.equal(by_module.explain(images).pixel_map, by_name.explain(images).pixel_map)
    with pytest.raises(ConfigError, match="not a submodule of the explained model"):
        GradCAM(resnet, layer=torch.nn.Conv2d(3, 3, 1))


def test_grad_cam_on_a_frozen_model_equals_captum_on_a_named_layer_and_a_vit(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    vit = create_classifier("test_vit", img_size=32, patch_size=8).eval()
    expected = GradCAM(vit, partitioner=GridPartitioner(4)).explain(images, 1).pixel_map
    for parameter in [*resnet.parameters(), *vit.parameters()]:
        parameter.requires_grad_(False)
    try:
        result = GradCAM(resnet, layer="layer3", partitioner=GridPartitioner(4)).explain(images, 2)
        reference = LayerGradCam(resnet, resnet.model.layer3).attribute(images, target=2, relu_attributions=True)
        frozen_vit = GradCAM(vit, partitioner=GridPartitioner(4)).explain(images, 1).pixel_map
    finally:
        for parameter in [*resnet.parameters(), *vit.parameters()]:
            parameter.requires_grad_(True)
    reference = LayerAttribution.interpolate(reference, (32, 32), "bilinear").squeeze(1).detach()
    assert reference.abs().max() > 0
    assert torch.allclose(result.pixel_map, reference, atol=1e-6 * float(reference.abs().max()) + 1e-9)
    assert expected.abs().max() > 0 and torch.allclose(frozen_vit, expected, atol=1e-6)


def test_grad_cam_records_no_graph_below_its_layer(resnet: torch.nn.Module) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    for explainer in (GradCAM(resnet), GradCAM(resnet, layer="layer3")):
        with torch.enable_grad():
            activations, logits = explainer.activations_and_logits(images)
        assert activations.is_leaf and activations.requires_grad  # the backward pass stops at the layer
        (gradients,) = torch.autograd.grad(logits[:, 0].sum(), activations)
        assert gradients.abs().sum() > 0
