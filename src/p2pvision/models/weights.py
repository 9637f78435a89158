"""Reading a checkpoint folder (``config.json`` + ``model.safetensors``) with every failure as one line that names
the checkpoint and the fix: missing files, invalid or malformed JSON, a truncated or corrupt weights file, weights that
do not fit the architecture, and NaN or infinite weights (a diverged training). Used by :mod:`p2pvision.models.hub`
(which checks the format) for every kind of checkpoint; no pickled code is ever loaded.
"""

from __future__ import annotations

import json
import os
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn

from p2pvision.errors import WeightsError, path_problem

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def checkpoint_folder(path: str | os.PathLike[str], what: str, written_by: str) -> Path:
    """The folder of a checkpoint (``path`` may name the folder or a file in it) that has both files."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    problem = path_problem(folder, "folder")
    if problem is not None:
        raise WeightsError(f"{what} checkpoint '{path}' {problem}: name a folder with {CONFIG_FILE} and "
                           f"{WEIGHTS_FILE} (as written by {written_by})")  # fmt: skip
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        problem = path_problem(folder / name)
        if problem is not None and problem != "does not exist":
            raise WeightsError(f"'{folder / name}' {problem}: copy the checkpoint again or write it again with "
                               f"{written_by}")  # fmt: skip
    if not ((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()):
        raise WeightsError(f"'{path}' is not a {what} checkpoint: expected a folder with {CONFIG_FILE} and "
                           f"{WEIGHTS_FILE} (as written by {written_by})")  # fmt: skip
    return folder


def read_config_json(folder: Path) -> dict[str, Any]:
    """The checkpoint's parsed ``config.json``, which must be a JSON object (its format is the loader's to check)."""
    config_file = folder / CONFIG_FILE
    try:
        meta = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsError(f"'{config_file}' is not valid JSON ({exc.msg} at line {exc.lineno}): write the "
                           "checkpoint again") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsError(f"'{config_file}' cannot be read ({exc}): check the file") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"'{config_file}' holds a JSON {type(meta).__name__}, not an object: write the checkpoint "
                           "again")  # fmt: skip
    return meta


def config_error(folder: Path, error: Exception) -> WeightsError:
    """A malformed setting in a checkpoint's ``config.json`` (a missing key, a value out of range) as one line."""
    detail = f"missing key {error}" if isinstance(error, KeyError) else str(error)
    return WeightsError(f"'{folder / CONFIG_FILE}' has an invalid setting: {detail}; write the checkpoint again")


def load_weights(model: nn.Module, folder: Path, device: str | torch.device = "cpu") -> None:
    """Load ``folder/model.safetensors`` into ``model`` (all keys, exact shapes), then refuse non-finite weights."""
    path = folder / WEIGHTS_FILE
    try:
        load_model(model, str(path), strict=True, device=str(device))
    except SafetensorError as exc:
        raise WeightsError(f"'{path}' is not a readable safetensors file ({exc}): it is truncated or corrupt; "
                           "copy it again or train again") from None  # fmt: skip
    except OSError as exc:
        raise WeightsError(f"'{path}' cannot be read ({exc}): check the file") from None
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"weights in '{folder}' do not fit the architecture its {CONFIG_FILE} describes: "
                           f"{detail}") from None  # fmt: skip
    check_finite(model, folder)


def check_finite(model: nn.Module, folder: Path) -> None:
    """Refuse a model with NaN or infinite parameters or buffers (what a diverged training saves)."""
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"checkpoint '{folder}' has NaN or infinite weights ({name}): its training diverged; "
                               "use an earlier checkpoint or train again (e.g. with a lower train.lr)")  # fmt: skip
