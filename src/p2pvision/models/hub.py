"""One checkpoint format for every trained model of p2pvision (P2P, the trained baselines, wrapped timm classifiers),
on the Hugging Face Hub's conventions: a folder, or a Hub model repository, holding

- ``model.safetensors``: the weights (no pickled code is ever loaded);
- ``config.json``: ``format`` (``p2pvision``), ``format_version``, ``kind`` (``p2p``, a baseline kind or
  ``classifier``), ``config`` (the settings that rebuild the untrained network), and, when known, ``experiment``
  (the training configuration) and ``metrics`` (``{split: {metric: value}}``);
- ``README.md``: a model card with the settings, the training configuration and the evaluation table.

:class:`HubMixin` gives a model ``from_pretrained(path_or_repo_id)``, ``save_pretrained(folder)`` and
``push_to_hub(repo_id)``. A repository id is fetched with ``huggingface_hub.snapshot_download`` (its cache, token and
offline mode apply); every failure is one line (see :mod:`p2pvision.models.weights`). Checkpoints of the formats
before this one (``p2pvision-p2p`` v1, ``p2pvision-baseline`` v1, ``p2pvision-classifier`` v1) keep loading: their
weights files are the same, only their config.json is laid out differently.

This is a thin class on huggingface_hub's functions rather than its ``ModelHubMixin``: that mixin writes config.json
itself from the constructor's arguments (captured by a hook on every instance), downloads config.json alone and
passes it back to the constructor, and keeps an existing README.md, whereas these checkpoints keep the config.json
layout older versions wrote, load with the checks above, and get a card that matches the weights on every save.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import torch
import yaml
from safetensors.torch import save_model
from torch import nn

from p2pvision import __version__
from p2pvision.cache import atomic_path, strict_json, write_json
from p2pvision.errors import WeightsError
from p2pvision.models.weights import CONFIG_FILE, WEIGHTS_FILE, checkpoint_folder, load_weights, read_config_json

FORMAT = "p2pvision"
FORMAT_VERSION = 2
CARD_FILE = "README.md"
# The formats before this one: their version, and the kind of model they hold (a baseline's is in its config.json).
LEGACY_FORMATS: dict[str, tuple[int, str | None]] = {
    "p2pvision-p2p": (1, "p2p"),
    "p2pvision-baseline": (1, None),
    "p2pvision-classifier": (1, "classifier"),
}
CLASSIFIER_SETTINGS = ("name", "num_classes", "class_names")  # what a p2pvision-classifier config.json holds
# How to load each kind, for the message when a checkpoint is loaded with the class of another kind.
LOADERS = {"p2p": "P2PModel.from_pretrained", "classifier": "ImageClassifier.from_pretrained"}
REPO_ID = re.compile(r"[A-Za-z0-9_][\w.-]*/[A-Za-z0-9_][\w.-]*")

M = TypeVar("M", bound="HubMixin")


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint's config.json in this format's layout (``kind``, ``config``, ``experiment``, ``metrics``),
    read from this format or an older one, after checking the format and its version."""
    meta = read_config_json(folder)
    name = meta.get("format")
    if name == FORMAT:
        if meta.get("format_version") != FORMAT_VERSION:
            raise WeightsError(f"'{folder}' has checkpoint format version {meta.get('format_version')}; this "
                               f"p2pvision reads version {FORMAT_VERSION}: use the p2pvision version that wrote it "
                               f"({meta.get('library_version', 'unknown')})")  # fmt: skip
        if not isinstance(meta.get("kind"), str):
            raise WeightsError(f"'{folder / CONFIG_FILE}' names no kind of model (p2p, a baseline or classifier): "
                               "write the checkpoint again")  # fmt: skip
        return meta
    if name not in LEGACY_FORMATS:
        raise WeightsError(f"'{folder / CONFIG_FILE}' describes format {name!r}, not {FORMAT!r} (or an older "
                           "p2pvision format): it is not a p2pvision checkpoint")  # fmt: skip
    version, kind = LEGACY_FORMATS[name]
    if name == "p2pvision-p2p" and meta.get("format_version") != version:  # the only one that checked its version
        raise WeightsError(f"'{folder}' has checkpoint format version {meta.get('format_version')}; this p2pvision "
                           f"reads version {version} of {name!r}: use the p2pvision version that wrote it")  # fmt: skip
    if name == "p2pvision-classifier":
        return {**meta, "kind": kind, "config": {key: meta[key] for key in CLASSIFIER_SETTINGS if key in meta}}
    return {**meta, "kind": meta.get("kind") if kind is None else kind}


def is_repo_id(text: str) -> bool:
    """Whether ``text`` (not an existing path) names a Hub model repository: ``namespace/name``."""
    return REPO_ID.fullmatch(text) is not None and ".." not in text and "--" not in text and len(text) <= 96


def resolve_checkpoint(
    path_or_repo_id: str | os.PathLike[str],
    what: str,
    written_by: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local folder of a checkpoint: ``path_or_repo_id`` itself (a folder or a file in it) when it exists or is
    no repository id, else its snapshot from the Hugging Face Hub (downloaded once into the Hub cache)."""
    text = os.fspath(path_or_repo_id)
    if os.path.lexists(text) or not is_repo_id(text):
        return checkpoint_folder(text, what, written_by)
    import huggingface_hub
    from huggingface_hub import errors

    try:
        folder = huggingface_hub.snapshot_download(
            text, revision=revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only,
            allow_patterns=[CONFIG_FILE, WEIGHTS_FILE, CARD_FILE], library_name="p2pvision",
            library_version=__version__,
        )  # fmt: skip
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled):
        raise WeightsError(f"'{text}' is no local folder, and the Hub model '{text}' is not in the Hub cache while "
                           "downloads are off (HF_HUB_OFFLINE=1 or local_files_only): check the path, or download "
                           "it once with network access") from None  # fmt: skip
    except errors.RevisionNotFoundError:
        raise WeightsError(f"the Hub model '{text}' has no revision {revision!r}: name a branch, tag or commit "
                           "it has") from None  # fmt: skip
    except errors.RepositoryNotFoundError:
        raise WeightsError(f"'{text}' is no local folder and no Hub model you can read: check the path or the "
                           "repository id (a private or gated one needs 'hf auth login')") from None  # fmt: skip
    except Exception as exc:  # network failures: the HTTP client's errors are not one family
        detail = " ".join(str(exc).split())[:200]
        raise WeightsError(f"cannot download the Hub model '{text}' ({type(exc).__name__}: {detail}): check the "
                           "network, or the path if you meant a local folder") from None  # fmt: skip
    return checkpoint_folder(folder, what, written_by)


def _fenced(text: str, language: str) -> str:
    """``text`` in a Markdown code block whose fence is longer than any backtick run inside it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _cell(value: Any) -> str:
    """A Markdown table cell: numbers to 4 significant digits, no line breaks or pipes that would end the cell."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def model_card(
    model: HubMixin,
    settings: Mapping[str, Any],
    experiment: Mapping[str, Any] | None,
    metrics: Mapping[str, Mapping[str, Any]] | None,
    repo_id: str | None = None,
) -> str:
    """The README.md of a checkpoint: Hub metadata, what the model is, how to load it, its settings, the training
    configuration and the evaluation table (each said to be unknown when it is)."""
    from huggingface_hub import ModelCardData

    kind = type(model).kind
    names = [str(name) for name in getattr(model, "class_names", [])]
    data = ModelCardData(library_name="p2pvision", pipeline_tag="image-classification",
                         tags=["p2pvision", "interpretability", kind])  # fmt: skip
    cls = type(model)
    source = repo_id or "path/to/this/folder"
    shown = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
    lines = [
        "---", data.to_yaml(), "---", "", f"# p2pvision {kind} model", "", cls.card_summary, "",
        f"Classes ({len(names)}): {_cell(shown)}.", "", "## Use", "",
        _fenced(f"from {cls.__module__} import {cls.__name__}\n\nmodel = {cls.__name__}.from_pretrained("
                f"{source!r})", "python"),
        "", f"Files: `{WEIGHTS_FILE}` (weights), `{CONFIG_FILE}` (format {FORMAT} v{FORMAT_VERSION}, written by "
        f"p2pvision {__version__}), this card.", "", "## Model settings", "",
        _fenced(yaml.safe_dump(strict_json(dict(settings)), sort_keys=True), "yaml"), "", "## Training configuration",
        "",
    ]  # fmt: skip
    if experiment:
        lines += [_fenced(yaml.safe_dump(strict_json(dict(experiment)), sort_keys=True), "yaml")]
    else:
        lines += ["Not recorded: this model was saved outside `p2pvision train`."]
    lines += ["", "## Evaluation", ""]
    if metrics:
        lines += ["| split | metric | value |", "|---|---|---|"]
        lines += [f"| {_cell(split)} | {_cell(name)} | {_cell(value)} |"
                  for split, values in metrics.items() for name, value in values.items()]  # fmt: skip
    else:
        lines += ["Not recorded: no evaluation was saved with this model."]
    return "\n".join(lines) + "\n"


class HubMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` for an ``nn.Module`` (see the module docstring).

    A class sets ``kind`` and ``card_summary`` and implements :meth:`checkpoint_settings` and
    :meth:`from_checkpoint_settings`; a loaded model keeps the checkpoint's ``experiment`` and ``metrics`` in
    ``training_info``, so that saving or pushing it again keeps its card.
    """

    kind: ClassVar[str]  # config.json's "kind"
    card_summary: ClassVar[str]  # what the model is, for its model card
    training_info: dict[str, Any]  # "experiment" and "metrics" when known

    # -- what each class provides ----------------------------------------------------------------------------------
    def checkpoint_settings(self) -> dict[str, Any]:
        """The JSON settings (config.json's ``config``) from which :meth:`from_checkpoint_settings` rebuilds it."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint_settings(cls: type[M], settings: Mapping[str, Any], folder: Path) -> M:
        """The untrained model of ``settings`` (read from ``folder``; a bad setting is one line naming it)."""
        raise NotImplementedError

    @classmethod
    def checkpoint_names(cls) -> tuple[str, str]:
        """For messages: what the checkpoint is called and what writes it."""
        return cls.kind, "'p2pvision train'"

    def weights_module(self) -> nn.Module:
        """The module whose state is ``model.safetensors``."""
        return cast(nn.Module, self)

    # -- the Hub conventions ----------------------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        experiment: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """Write ``model.safetensors``, ``README.md`` and last ``config.json`` into ``save_directory`` (each
        atomically; config.json last, so that its presence means a complete checkpoint); returns the folder.

        ``experiment`` (the training configuration) and ``metrics`` (``{split: {metric: value}}``) default to the
        ones the model was loaded with; ``repo_id`` is the Hub repository the card's example loads from.
        """
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        known = getattr(self, "training_info", {})
        experiment = known.get("experiment") if experiment is None else experiment
        metrics = known.get("metrics") if metrics is None else metrics
        settings = self.checkpoint_settings()
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": self.kind}
            save_model(self.weights_module(), str(tmp), metadata=metadata)
        with atomic_path(folder / CARD_FILE) as tmp:
            tmp.write_text(model_card(self, settings, experiment, metrics, repo_id), encoding="utf-8")
        meta: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": self.kind,
                                "library_version": __version__, "config": settings}  # fmt: skip
        meta.update({key: dict(value) for key, value in (("experiment", experiment), ("metrics", metrics)) if value})
        write_json(folder / CONFIG_FILE, meta)
        return folder

    @classmethod
    def from_pretrained(
        cls: type[M],
        path_or_repo_id: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
    ) -> M:
        """Load a checkpoint (a local folder, a file in it, or a Hub repository id ``namespace/name``) of this
        class's kind, in eval mode on ``device``, checking its format, settings, architecture and that every weight
        is finite. ``revision``, ``cache_dir``, ``token`` and ``local_files_only`` are the Hub download's."""
        what, written_by = cls.checkpoint_names()
        folder = resolve_checkpoint(path_or_repo_id, what, written_by, revision=revision, cache_dir=cache_dir,
                                    token=token, local_files_only=local_files_only)  # fmt: skip
        meta = read_checkpoint(folder)
        if meta.get("kind") != cls.kind:
            loader = LOADERS.get(str(meta.get("kind")), "p2pvision.baselines.load_baseline")
            raise WeightsError(f"'{folder / CONFIG_FILE}' holds a {meta.get('kind')!r} model, not a {cls.kind!r} "
                               f"one: load it with {loader}")  # fmt: skip
        settings = meta.get("config")
        if not isinstance(settings, dict):
            raise WeightsError(f"'{folder / CONFIG_FILE}' has no 'config' object of settings: write the checkpoint "
                               "again")  # fmt: skip
        model = cls.from_checkpoint_settings(settings, folder)
        load_weights(model.weights_module(), folder, device)
        model.training_info = {key: meta[key] for key in ("experiment", "metrics") if isinstance(meta.get(key), dict)}
        return cast(M, cast(nn.Module, model).to(device).eval())

    def push_to_hub(
        self,
        repo_id: str,
        *,
        experiment: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Mapping[str, Any]] | None = None,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        commit_message: str | None = None,
    ) -> str:
        """Save the model (as :meth:`save_pretrained`) and upload it to the Hub model repository ``repo_id``,
        created if needed (``private`` then applies); returns the URL of the commit (of the pull request with
        ``create_pr``)."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="p2pvision-push-") as folder:
            self.save_pretrained(folder, experiment=experiment, metrics=metrics, repo_id=repo.repo_id)
            commit = api.upload_folder(
                repo_id=repo.repo_id, folder_path=folder, repo_type="model", revision=revision, create_pr=create_pr,
                commit_message=commit_message or f"Upload p2pvision {self.kind} model",
            )  # fmt: skip
        return str(commit.pr_url if create_pr and commit.pr_url else commit.commit_url)
