"""Classifiers by timm name with offline weights: the real EfficientNet-Lite0 package, local files, errors."""

import numpy as np
import pytest
import skimage.data
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from p2pvision.errors import WeightsError
from p2pvision.models.backbones import create_classifier, load_state_dict_by_position


@pytest.fixture(scope="module")
def lite0():
    return create_classifier("tf_efficientnet_lite0", weights="package").eval()


def _top1(model, photo: np.ndarray) -> str:
    with torch.no_grad():
        logits = model(model.preprocess(Image.fromarray(photo))[None])
    return model.class_names[int(logits.argmax())]


def test_lite0_package_weights_classify_bundled_photos(lite0):
    assert lite0.input_size == (3, 224, 224)
    assert _top1(lite0, skimage.data.chelsea()) in {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
    assert _top1(lite0, skimage.data.coffee()) == "espresso"


def test_classifier_normalises_inputs_itself(lite0):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(lite0(x), lite0.model((x - 0.5) / 0.5), atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weight_files_load_without_pickled_code(tmp_path, suffix):
    source = timm.create_model("test_resnet", num_classes=7).eval()
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = create_classifier("test_resnet", weights=path, num_classes=7).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), source(model.normalize(x)), atol=1e-6)
    assert model.class_names == [f"class_{i}" for i in range(7)]


def test_new_head_for_another_class_count(lite0):
    model = create_classifier(
        "tf_efficientnet_lite0", weights="package", num_classes=10, class_names=list("abcdefghij")
    )
    assert model.num_classes == 10 and model.class_names[3] == "d"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 10)
    stem = "model.conv_stem.weight"
    assert torch.equal(model.state_dict()[stem], lite0.state_dict()[stem])


def test_errors_are_one_line_and_name_the_problem(tmp_path):
    cases = [
        (dict(name="no_such_net_xyz"), "unknown timm model 'no_such_net_xyz'"),
        (dict(name="test_resnet", weights=tmp_path / "missing.pth"), "missing.pth' does not exist"),
        (dict(name="resnet18", weights="package"), "no offline weights package for 'resnet18'"),
        (dict(name="test_resnet", weights="hub"), "cannot download hub weights for 'test_resnet'"),
    ]
    bad = tmp_path / "weights.txt"
    bad.write_text("x")
    cases.append((dict(name="test_resnet", weights=bad), "unknown suffix"))
    wrong = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(3, 3)}, wrong)
    cases.append((dict(name="test_resnet", weights=wrong), "do not fit timm model 'test_resnet'"))
    for kwargs, fragment in cases:
        with pytest.raises(WeightsError) as info:
            create_classifier(**kwargs)
        assert fragment in str(info.value) and "\n" not in str(info.value)


def test_positional_loading_checks_count_and_shapes():
    model = timm.create_model("test_resnet")
    tensors = {f"w{i}": v.clone() for i, (k, v) in enumerate(model.state_dict().items()) if "num_batches" not in k}
    load_state_dict_by_position(model, tensors, "renamed")
    with pytest.raises(WeightsError, match="tensors but the model expects"):
        load_state_dict_by_position(model, dict(list(tensors.items())[:-3]), "short")
    first = next(iter(tensors))
    with pytest.raises(WeightsError, match="has shape"):
        load_state_dict_by_position(model, {**tensors, first: torch.zeros(1)}, "bad")
