"""Any PyTorch classifier in a few lines: a plain torchvision resnet18, a Hugging Face-style model (an output with
``.logits``), a timm model, extra forward arguments and baselines. Grad-CAM, occlusion and LIME equal Captum's
``LayerGradCam``, ``Occlusion`` and ``Lime`` given the same layer, windows, baseline, samples and kernel."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import timm
import torch
import torchvision
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import LayerAttribution, LayerGradCam, Lime, Occlusion
from torch import nn

from p2pvision.classifier import WrappedClassifier, as_classifier
from p2pvision.errors import ConfigError
from p2pvision.explain import make_explainer
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner, partition_batch

SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=10).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


TARGET = torch.tensor([3, 7])


def test_grad_cam_on_a_plain_torchvision_resnet18_equals_captum(resnet: nn.Module, images: torch.Tensor) -> None:
    explanation = make_explainer("gradcam", resnet, layer=resnet.layer4).explain(images, target=TARGET)
    reference = LayerGradCam(resnet, resnet.layer4).attribute(images, target=TARGET, relu_attributions=True)
    reference = LayerAttribution.interpolate(reference, (SIZE, SIZE), "bilinear").squeeze(1).detach()
    assert reference.abs().max() > 0
    assert (explanation.pixel_map - reference).abs().max() <= 1e-6 * reference.abs().max()  # measured: 0
    assert not resnet.training  # the explainer leaves the user's model in the mode it found it
    named = make_explainer("grad_cam", resnet, layer="layer4").explain(images, target=TARGET)
    assert torch.equal(named.pixel_map, explanation.pixel_map)


def test_occlusion_on_a_plain_torchvision_resnet18_equals_captum(resnet: nn.Module, images: torch.Tensor) -> None:
    explainer = make_explainer("occlusion", resnet, patch=32, stride=16, value="logit")
    explanation = explainer.explain(images, target=TARGET, baselines=0.0)
    reference = Occlusion(resnet).attribute(images, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16),
                                            baselines=0.0, target=TARGET)  # fmt: skip
    assert reference.abs().max() > 0 and torch.equal(reference[:, 0], reference[:, 2])  # one window spans the channels
    assert (explanation.pixel_map - reference[:, 0]).abs().max() <= 1e-5 * reference.abs().max()  # measured: 0
    assert explanation.params["removal"] == {"name": "baseline", "baseline": [0.0]}
    assert explainer.params["removal"]["name"] == "mean"  # the baselines were for that call only


def test_the_mean_fill_of_a_plain_model_is_each_images_mean_colour_or_the_given_normalisation_mean(
    resnet: nn.Module, images: torch.Tensor
) -> None:
    # normalisation unknown: each image is filled with its own mean colour (Captum: that colour as the baseline)
    explanation = make_explainer("occlusion", resnet, patch=32, stride=16, value="logit").explain(images, TARGET)
    assert explanation.params["removal"] == {"name": "mean", "mean": "per image"}
    colour = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    reference = Occlusion(resnet).attribute(images, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16),
                                            baselines=colour, target=TARGET)  # fmt: skip
    assert (explanation.pixel_map - reference[:, 0]).abs().max() <= 1e-5 * reference.abs().max()
    # mean/std given: the model sees normalised images and the fill is the normalisation mean (0 after it)
    explainer = make_explainer("occlusion", resnet, mean=MEAN, std=STD, patch=32, stride=16, value="logit")
    explanation = explainer.explain(images, TARGET)
    assert explanation.params["removal"]["mean"] == pytest.approx(list(MEAN))
    normalise = torchvision.transforms.Normalize(MEAN, STD)
    reference = Occlusion(lambda x: resnet(normalise(x))).attribute(
        images, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), target=TARGET,
        baselines=torch.tensor(MEAN).view(1, 3, 1, 1).expand_as(images).contiguous(),
    )  # fmt: skip
    assert (explanation.pixel_map - reference[:, 0]).abs().max() <= 1e-5 * reference.abs().max()


def test_the_mean_fill_of_p2pvisions_own_classifier_is_unchanged() -> None:
    model = create_classifier("test_resnet")
    explainer = make_explainer("occlusion", model)
    assert explainer.model is model
    assert explainer.params["removal"]["mean"] == pytest.approx(model.mean.flatten().tolist())
    with pytest.raises(ConfigError, match="normalises its inputs itself"):
        make_explainer("occlusion", model, mean=MEAN, std=STD)


def test_lime_on_a_plain_torchvision_resnet18_equals_captum(resnet: nn.Module, images: torch.Tensor) -> None:
    """Captum's Lime with this project's samples (its own seeded on/off patterns, the first all on), its kernel
    (``sqrt(exp(-d^2 / width^2))`` of the cosine distance to the all-on pattern) and ridge regression."""
    regions = partition_batch(images, GridPartitioner(4))
    samples, width, seed = 32, 0.25, 5
    explainer = make_explainer("lime", resnet, partitioner=GridPartitioner(4), num_samples=samples,
                               kernel_width=width, seed=seed, value="logit")  # fmt: skip
    explanation = explainer.explain(images, target=TARGET, regions=regions, baselines=0.0)
    for b in range(len(images)):
        players = int(regions[b].max()) + 1
        patterns = torch.rand(samples, players, generator=torch.Generator().manual_seed(seed)) < 0.5
        patterns[0] = True

        def perturb(original, patterns=patterns, **kwargs):
            for pattern in patterns:
                yield pattern.float().unsqueeze(0)

        def similarity(original, perturbed, interpretable, players=players, **kwargs):
            cosine = (interpretable.sum() / players).sqrt()
            return torch.sqrt(torch.exp(-((1 - cosine) ** 2) / width**2))

        lime = Lime(resnet, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity,
                    perturb_func=perturb)  # fmt: skip
        reference = lime.attribute(images[b : b + 1], target=int(TARGET[b]), feature_mask=regions[b][None, None],
                                   baselines=0.0, n_samples=samples, return_input_shape=False,
                                   perturbations_per_eval=samples)[0]  # fmt: skip
        assert reference.abs().max() > 0
        # Captum fits in float32, this project in float64: measured 1e-8 against coefficients of 3e-2
        assert (explanation.scores[b, :players] - reference).abs().max() <= 1e-4 * reference.abs().max()
    assert explanation.evaluations.tolist() == [samples, samples]


def test_targets_as_int_list_tensor_or_none(resnet: nn.Module, images: torch.Tensor) -> None:
    explainer = make_explainer("gradcam", resnet, layer=resnet.layer4)
    predicted = resnet(images).argmax(1)
    assert explainer.explain(images).target.tolist() == predicted.tolist()
    assert explainer.explain(images, target=4).target.tolist() == [4, 4]
    as_list = explainer.explain(images, target=[3, 7])
    assert as_list.target.tolist() == [3, 7]
    assert torch.equal(as_list.pixel_map, explainer.explain(images, target=TARGET).pixel_map)
    assert make_explainer("occlusion", resnet, patch=32, stride=32).explain(images, [1, 2]).target.tolist() == [1, 2]


@dataclass
class Output:
    """What a Hugging Face image classifier returns: an object with ``.logits`` (and more)."""

    logits: torch.Tensor
    hidden: torch.Tensor


class Config:
    image_mean = [0.5, 0.5, 0.5]
    image_std = [0.25, 0.25, 0.25]
    id2label = {0: "cat", 1: "dog", 2: "bird"}


class HuggingFaceStyle(nn.Module):
    """A tiny stand-in for a transformers model: ``forward(pixel_values)`` returns an output with ``.logits``, and
    ``config`` states the normalisation (as image processors do)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = Config()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

    def forward(self, pixel_values: torch.Tensor) -> Output:
        hidden = self.features(pixel_values)
        return Output(logits=self.head(hidden), hidden=hidden)


def test_a_hugging_face_style_model_gives_its_logits_and_normalisation(images: torch.Tensor) -> None:
    model = HuggingFaceStyle().eval()
    wrapped = as_classifier(model)
    assert isinstance(wrapped, WrappedClassifier) and wrapped.class_names == ["cat", "dog", "bird"]
    expected = model((images - 0.5) / 0.25).logits
    assert torch.allclose(wrapped(images), expected)
    explanation = make_explainer("gradcam", model, layer=model.features).explain(images)
    assert explanation.target.tolist() == expected.argmax(1).tolist() and explanation.pixel_map.shape == (2, SIZE, SIZE)
    occlusion = make_explainer("occlusion", model, patch=32, stride=32).explain(images, target=1)
    assert occlusion.params["removal"]["mean"] == [0.5, 0.5, 0.5]  # the stated mean is the neutral fill
    overridden = as_classifier(model, mean=0.0, std=1.0)
    assert torch.allclose(overridden(images), model(images).logits)


def test_a_timm_model_is_normalised_as_its_pretrained_config_says(images: torch.Tensor) -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=4).eval()
    wrapped = as_classifier(model)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    assert torch.allclose(wrapped(images), model((images - mean) / std), atol=1e-5)
    explanation = make_explainer("grad_cam", model).explain(images)  # timm's forward_features: no layer needed
    assert explanation.params["layer"] == "forward_features" and explanation.pixel_map.shape == (2, SIZE, SIZE)


class Scaled(nn.Module):
    """A classifier with an extra forward argument: its logits are multiplied by a per-image ``scale``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor, scale: torch.Tensor, shift: float = 0.0) -> torch.Tensor:
        return self.network(images) * scale.view(-1, 1) + shift


def test_additional_forward_args_reach_every_evaluation_per_image(resnet: nn.Module, images: torch.Tensor) -> None:
    model = Scaled(resnet).eval()
    scale = torch.tensor([2.0, -0.5])
    explainer = make_explainer("occlusion", model, patch=32, stride=16, value="logit", batch_size=7)
    explanation = explainer.explain(images, TARGET, additional_forward_args=(scale, 1.0), baselines=0.0)
    reference = Occlusion(model).attribute(
        images, (3, 32, 32), strides=(3, 16, 16), baselines=0.0, target=TARGET, additional_forward_args=(scale, 1.0)
    )
    assert (explanation.pixel_map - reference[:, 0]).abs().max() <= 1e-5 * reference.abs().max()
    for b in range(2):  # each image sees its own entry in chunks that mix images
        alone = explainer.explain(images[b : b + 1], TARGET[b], additional_forward_args=scale[b : b + 1],
                                  baselines=0.0)  # fmt: skip
        assert torch.allclose(alone.pixel_map[0], explanation.pixel_map[b], atol=1e-5)
    cam = make_explainer("gradcam", model, layer=model.network.layer4, batch_size=1)
    scaled = cam.explain(images, additional_forward_args=scale)
    plain = make_explainer("gradcam", resnet, layer=resnet.layer4).explain(images, target=scaled.target)
    # a positive scale scales the map; a negative one flips the gradients, so ReLU keeps the other side
    assert torch.allclose(scaled.pixel_map[0], 2 * plain.pixel_map[0], atol=1e-6)
    assert torch.equal(scaled.predicted, (resnet(images) * scale.view(-1, 1)).argmax(1))
    lime = make_explainer("lime", model, num_samples=8, partitioner=GridPartitioner(2))
    assert lime.explain(images, additional_forward_args=(scale,)).scores.shape == (2, 4)


def test_baselines_are_checked_and_only_taken_by_methods_that_remove_pixels(
    resnet: nn.Module, images: torch.Tensor
) -> None:
    with pytest.raises(ConfigError, match="grad_cam removes no pixels: it takes no baselines"):
        make_explainer("gradcam", resnet, layer=resnet.layer4).explain(images, baselines=0.0)
    occlusion = make_explainer("occlusion", resnet, patch=32, stride=32)
    with pytest.raises(ConfigError, match=r"baselines must be in \[0, 1\] like the images"):
        occlusion.explain(images, baselines=-1.0)
    with pytest.raises(ConfigError, match="baselines must be a number, 3 RGB values"):
        occlusion.explain(images, baselines=torch.zeros(2, 2))
    grey = occlusion.explain(images, target=1, baselines=[0.5, 0.5, 0.5])
    image = occlusion.explain(images, target=1, baselines=torch.full((3, SIZE, SIZE), 0.5))
    per_image = occlusion.explain(images, target=1, baselines=torch.full((2, 3, SIZE, SIZE), 0.5))
    assert torch.equal(grey.pixel_map, image.pixel_map) and torch.equal(grey.pixel_map, per_image.pixel_map)
    with pytest.raises(ConfigError, match="give both mean and std"):
        make_explainer("occlusion", resnet, mean=MEAN)
    with pytest.raises(ConfigError, match="std must be one or three positive numbers"):
        make_explainer("occlusion", resnet, mean=MEAN, std=(0.2, 0.0, 0.2))
