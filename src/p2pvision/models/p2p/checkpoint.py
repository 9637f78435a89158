"""Save and load P2P models as ``model.safetensors`` plus ``config.json`` (no pickled code is ever loaded)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from p2pvision.cache import atomic_path, write_json
from p2pvision.errors import WeightsError
from p2pvision.models.p2p.config import P2PConfig
from p2pvision.models.p2p.model import P2PModel

FORMAT = "p2pvision-p2p"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_p2p(model: P2PModel, folder: str | os.PathLike[str], extra: dict | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (each atomically); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    config = dataclasses.replace(model.config, class_names=list(model.class_names))
    write_json(
        folder / CONFIG_FILE,
        {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_dict(), **(extra or {})},
    )
    return folder


def read_checkpoint_config(path: str | os.PathLike[str]) -> tuple[Path, dict]:
    """The checkpoint folder (``path`` may name the folder or a file in it) and its parsed config.json."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    config_file = folder / CONFIG_FILE
    if not (config_file.is_file() and (folder / WEIGHTS_FILE).is_file()):
        raise WeightsError(
            f"'{path}' is not a P2P checkpoint: expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(as written by 'p2pvision train')"
        )
    try:
        meta = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{config_file}' is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if meta.get("format") != FORMAT:
        raise WeightsError(f"'{config_file}' describes format '{meta.get('format')}', not a P2P model ('{FORMAT}')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"'{folder}' has checkpoint format version {meta.get('format_version')}; this p2pvision reads version "
            f"{FORMAT_VERSION}: use the p2pvision version that wrote it"
        )
    return folder, meta


def load_p2p(
    path: str | os.PathLike[str], *, num_classes: int | None = None, device: str | torch.device = "cpu"
) -> P2PModel:
    """Load a model saved by :func:`save_p2p`, checking format version, class count and architecture."""
    folder, meta = read_checkpoint_config(path)
    config = P2PConfig.from_dict(meta["config"])
    if num_classes is not None and config.num_classes != num_classes:
        raise WeightsError(f"checkpoint '{folder}' has {config.num_classes} classes, expected {num_classes}")
    # The saved weights replace everything: build the networks without fetching pretrained weights.
    model = P2PModel(dataclasses.replace(config, classifier_weights=None, selector_weights=None))
    model.config = config
    try:
        load_model(model, str(folder / WEIGHTS_FILE), strict=True, device=str(device))
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(
            f"weights in '{folder}' do not fit the architecture its config.json describes: {detail}"
        ) from exc
    return model.to(device).eval()
