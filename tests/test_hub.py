"""One checkpoint format on the Hugging Face Hub conventions (p2pvision.models.hub): save_pretrained ->
from_pretrained gives identical predictions for P2P, each trained baseline and a wrapped timm classifier; checkpoints
of the older formats (written here as the old code wrote them) still load; the model card holds the settings, the
training configuration and the evaluation table; a repository id goes through huggingface_hub.snapshot_download
(and is one line offline); push_to_hub uploads the saved folder. Offline throughout: the Hub calls are replaced."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import CommitInfo, HfApi, ModelCard, RepoUrl
from safetensors.torch import save_file, save_model

from p2pvision.baselines import PixelMaskClassifier, RealXModel, SoftMaskModel, load_baseline
from p2pvision.errors import WeightsError
from p2pvision.models.backbones import ImageClassifier, create_classifier, load_classifier
from p2pvision.models.p2p import P2PConfig, P2PModel, load_p2p
from p2pvision.models.p2p.checkpoint import read_checkpoint_config

TINY = {"num_classes": 3, "image_size": 32, "classifier": "test_resnet", "selector_backbone": "test_resnet",
        "selector_levels": (1, 2), "head_channels": 8, "max_regions": 16, "partition": {"name": "grid", "grid": 4},
        "fixed_tau": 0.25, "class_names": ["cat", "dog", "bird"]}  # fmt: skip
KINDS = {"p2p": P2PModel, "blackbox_pixel": PixelMaskClassifier, "realx": RealXModel, "soft_mask": SoftMaskModel}
EXPERIMENT = {"name": "tiny", "data": {"source": "semisynthetic", "task": "object"}, "train": {"epochs": 2, "lr": 0.01}}
METRICS = {"validation": {"val/acc": 0.9375, "val/loss": 0.21}}


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``model`` in eval mode with every saved weight moved by seeded noise: weights no fresh build has."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():  # the tensors themselves, not copies
            if tensor.is_floating_point():
                noise = 0.1 * torch.randn(tensor.shape, generator=generator)
                tensor.mul_(noise.exp()) if name.endswith("running_var") else tensor.add_(noise)
    return model.eval()


def build(kind: str) -> torch.nn.Module:
    if kind == "classifier":
        return perturbed(create_classifier("test_resnet", num_classes=3, class_names=["cat", "dog", "bird"]), 1)
    return perturbed(KINDS[kind](P2PConfig(**TINY)), 1)


def predictions(model: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """What a user gets from the model: class probabilities, and for the explaining models their kept pixels."""
    with torch.no_grad():
        if isinstance(model, ImageClassifier):
            return [model(images).softmax(-1)]
        if isinstance(model, P2PModel):
            explanation = model.explain(images, tau=0.3)
        else:
            explanation = model.explain(images)
    return [explanation.probabilities, explanation.keep.float()]


def same(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def loader(kind: str):
    return ImageClassifier if kind == "classifier" else KINDS[kind]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared CPU: one thread avoids OpenMP's spinning (restored after this module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("kind", [*KINDS, "classifier"])
def test_save_pretrained_then_from_pretrained_predicts_identically(kind: str, images: torch.Tensor, tmp_path) -> None:
    model = build(kind)
    expected = predictions(model, images)
    fresh = loader(kind).from_checkpoint_settings(model.checkpoint_settings(), tmp_path).eval()
    assert not same(expected, predictions(fresh, images))  # an untrained build differs: the weights carry the answer
    folder = model.save_pretrained(tmp_path / "model", experiment=EXPERIMENT, metrics=METRICS)
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert (meta["format"], meta["format_version"], meta["kind"]) == ("p2pvision", 2, kind)
    assert meta["experiment"] == EXPERIMENT and meta["metrics"] == METRICS
    loaded = loader(kind).from_pretrained(folder)
    assert not loaded.training and same(predictions(loaded, images), expected)
    assert loaded.class_names == ["cat", "dog", "bird"] and loaded.training_info == {"experiment": EXPERIMENT,
                                                                                      "metrics": METRICS}  # fmt: skip
    # the functions the commands call read the same folders
    function = {"p2p": load_p2p, "classifier": load_classifier}.get(kind, load_baseline)
    assert same(predictions(function(folder / "config.json"), images), expected)


# -- the formats before this one, written as the code of those versions wrote them -------------------------------
def write_old_checkpoint(model: torch.nn.Module, kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True)
    if kind == "classifier":  # p2pvision-classifier: the timm network's state dict, name and classes
        save_file({k: v.detach().contiguous() for k, v in model.model.state_dict().items()},
                  str(folder / "model.safetensors"))  # fmt: skip
        meta = {"format": "p2pvision-classifier", "format_version": 1, "name": "test_resnet",
                "num_classes": model.num_classes, "class_names": model.class_names}  # fmt: skip
    else:
        config = dataclasses.replace(model.config, class_names=list(model.class_names)).to_dict()
        if kind == "p2p":  # p2pvision-p2p v1
            save_model(model, str(folder / "model.safetensors"), metadata={"format": "p2pvision-p2p",
                                                                           "format_version": "1"})  # fmt: skip
            meta = {"format": "p2pvision-p2p", "format_version": 1, "config": config, "experiment": EXPERIMENT}
        else:  # p2pvision-baseline v1
            save_model(
                model, str(folder / "model.safetensors"), metadata={"format": "p2pvision-baseline", "kind": kind}
            )
            meta = {"format": "p2pvision-baseline", "format_version": 1, "kind": kind, "config": config,
                    "experiment": EXPERIMENT}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return folder


@pytest.mark.parametrize("kind", [*KINDS, "classifier"])
def test_checkpoints_of_the_older_formats_still_load_and_save_in_the_new_one(kind: str, images, tmp_path) -> None:
    model = build(kind)
    expected = predictions(model, images)
    old = write_old_checkpoint(model, kind, tmp_path / "old")
    loaded = loader(kind).from_pretrained(old)
    assert same(predictions(loaded, images), expected)
    function = {"p2p": load_p2p, "classifier": load_classifier}.get(kind, load_baseline)
    assert same(predictions(function(old), images), expected)
    if kind == "p2p":  # what `p2pvision evaluate` reads: the training data of either layout
        assert read_checkpoint_config(old)[1]["experiment"] == EXPERIMENT
    again = loaded.save_pretrained(tmp_path / "new")  # the experiment it was trained with stays with it
    assert json.loads((again / "config.json").read_text())["format"] == "p2pvision"
    assert same(predictions(loader(kind).from_pretrained(again), images), expected)
    if kind != "classifier":
        assert json.loads((again / "config.json").read_text())["experiment"] == EXPERIMENT
    if kind == "classifier":  # the weights file is still a plain timm state dict, usable as classifier weights
        reused = create_classifier("test_resnet", weights=again / "model.safetensors", num_classes=3).eval()
        assert torch.equal(reused(images), model(images))


def test_an_old_p2p_checkpoint_of_another_version_is_one_line(tmp_path) -> None:
    old = write_old_checkpoint(build("p2p"), "p2p", tmp_path / "old")
    meta = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**meta, "format_version": 3}))
    with pytest.raises(WeightsError, match="format version 3; this p2pvision reads version 1 of 'p2pvision-p2p'"):
        load_p2p(old)


# -- the model card ---------------------------------------------------------------------------------------------
def fenced_blocks(text: str) -> list[str]:
    return [match.group(2) for match in re.finditer(r"^(`{3,})\w*\n(.*?)\n\1$", text, flags=re.S | re.M)]


def test_the_model_card_holds_settings_training_configuration_and_evaluation(tmp_path) -> None:
    model = build("p2p")
    model.classifier.class_names[0] = "a|b\nc"  # a name that would break a table row
    experiment = {**EXPERIMENT, "name": "tricky ``` name"}  # and one that would end a code block
    folder = model.save_pretrained(tmp_path / "model", experiment=experiment, metrics=METRICS)
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "p2pvision" and card.data.pipeline_tag == "image-classification"
    assert set(card.data.tags) == {"p2pvision", "interpretability", "p2p"}
    usage, settings, training = fenced_blocks(text)
    assert "P2PModel.from_pretrained('path/to/this/folder')" in usage
    assert yaml.safe_load(settings) == json.loads((folder / "config.json").read_text())["config"]
    assert yaml.safe_load(training) == experiment
    assert "| validation | val/acc | 0.9375 |" in text and "| validation | val/loss | 0.21 |" in text
    assert "Classes (3): a\\|b c, dog, bird." in text
    # without a recorded training the card says so, and a loaded model keeps its card on a new save
    bare = build("blackbox_pixel").save_pretrained(tmp_path / "bare")
    assert "Not recorded: this model was saved outside `p2pvision train`." in (bare / "README.md").read_text()
    assert "Not recorded: no evaluation was saved" in (bare / "README.md").read_text()
    P2PModel.from_pretrained(folder).save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "README.md").read_text() == text


# -- the Hub: a repository id, offline, and push_to_hub -----------------------------------------------------------
def test_a_repo_id_is_fetched_with_snapshot_download(images, tmp_path, monkeypatch) -> None:
    model = build("p2p")
    folder = model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    loaded = P2PModel.from_pretrained("someone/tiny-p2p", revision="v1", cache_dir=tmp_path / "cache")
    assert same(predictions(loaded, images), predictions(model, images))
    (repo_id, kwargs), = calls  # fmt: skip
    assert repo_id == "someone/tiny-p2p" and kwargs["revision"] == "v1" and kwargs["cache_dir"] == tmp_path / "cache"
    assert sorted(kwargs["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    assert kwargs["library_name"] == "p2pvision"
    assert same(predictions(load_p2p("someone/tiny-p2p"), images), predictions(model, images))
    # an existing local folder whose name looks like a repository id is the local folder
    monkeypatch.chdir(tmp_path)
    P2PModel.from_pretrained("snapshot")
    shutil.copytree(folder, tmp_path / "someone" / "local")
    P2PModel.from_pretrained("someone/local")
    assert len(calls) == 2


def test_offline_a_repo_id_is_one_line_and_a_missing_path_stays_a_local_error(tmp_path) -> None:
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # tests/conftest.py
    with pytest.raises(WeightsError, match="'someone/tiny-p2p' is no local folder, and the Hub model") as error:
        P2PModel.from_pretrained("someone/tiny-p2p", cache_dir=tmp_path)
    assert "HF_HUB_OFFLINE=1" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(WeightsError, match="does not exist: name a folder with config.json"):
        load_p2p(tmp_path / "results" / "model")
    with pytest.raises(WeightsError, match="does not exist: name a folder with config.json"):
        load_classifier("results/object/model")  # two slashes: a path, not a repository id


def test_a_checkpoint_of_another_kind_names_its_loader(tmp_path) -> None:
    realx = build("realx").save_pretrained(tmp_path / "realx")
    with pytest.raises(WeightsError, match="holds a 'realx' model, not a 'p2p' one: load it with "
                                           "p2pvision.baselines.load_baseline"):  # fmt: skip
        P2PModel.from_pretrained(realx)
    assert isinstance(load_baseline(realx), RealXModel)
    p2p = build("p2p").save_pretrained(tmp_path / "p2p")
    with pytest.raises(WeightsError, match="describes a 'p2p' model, not a baseline"):
        load_baseline(p2p)
    with pytest.raises(WeightsError, match="load it with P2PModel.from_pretrained"):
        ImageClassifier.from_pretrained(p2p)
    meta = json.loads((p2p / "config.json").read_text())
    (p2p / "config.json").write_text(json.dumps({key: value for key, value in meta.items() if key != "kind"}))
    with pytest.raises(WeightsError, match="config.json' names no kind of model"):
        P2PModel.from_pretrained(p2p)
    nameless = create_classifier("test_resnet", num_classes=3)
    nameless.name = None
    with pytest.raises(WeightsError, match="no timm model name"):
        nameless.save_pretrained(tmp_path / "nameless")


def test_push_to_hub_creates_the_repo_and_uploads_the_saved_checkpoint(images, tmp_path, monkeypatch) -> None:
    model = build("soft_mask")
    calls: dict[str, dict] = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = {"repo_id": repo_id, **kwargs}
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, **kwargs):
        calls["upload_folder"] = kwargs
        shutil.copytree(kwargs["folder_path"], tmp_path / "uploaded")  # what the Hub would receive
        return CommitInfo(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc", commit_message="m",
                          commit_description="", oid="abc")  # fmt: skip

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    url = model.push_to_hub("me/tiny-soft-mask", private=True, experiment=EXPERIMENT, metrics=METRICS)
    assert url == "https://huggingface.co/me/tiny-soft-mask/commit/abc"
    assert calls["create_repo"] == {"repo_id": "me/tiny-soft-mask", "private": True, "repo_type": "model",
                                    "exist_ok": True}  # fmt: skip
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "me/tiny-soft-mask" and upload["repo_type"] == "model"
    assert upload["commit_message"] == "Upload p2pvision soft_mask model" and not Path(upload["folder_path"]).exists()
    uploaded = tmp_path / "uploaded"
    assert sorted(path.name for path in uploaded.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "SoftMaskModel.from_pretrained('me/tiny-soft-mask')" in (uploaded / "README.md").read_text()
    assert "| validation | val/acc | 0.9375 |" in (uploaded / "README.md").read_text()
    assert same(predictions(SoftMaskModel.from_pretrained(uploaded), images), predictions(model, images))
