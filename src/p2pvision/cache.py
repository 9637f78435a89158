"""Where p2pvision keeps generated data and derived files, and how it writes files safely.

Everything generated (data sets, region maps) lives under one cache directory: ``$P2PVISION_CACHE`` if set,
else the platform's user cache directory. Files are written to a temporary name in the same folder and
renamed into place, so an interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

CACHE_ENV = "P2PVISION_CACHE"


def cache_dir() -> Path:
    """The root cache directory (created if missing)."""
    root = os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("p2pvision")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def params_key(params: dict[str, Any], length: int = 16) -> str:
    """A short stable hash of JSON-serialisable parameters, used to name cache entries."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and setting it races with threads


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success rename it to ``final``, on error delete it.

    The temporary name keeps the final suffix so that libraries choosing a format by extension work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600, and some writers (safetensors) create the file anew: results get the usual
        # permissions (0666 less the umask) when they are renamed into place
        tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it takes the place of ``final`` (an earlier folder of
    that name is removed), on error it is deleted: an interrupted run never leaves a half-written folder."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~_UMASK)  # mkdtemp creates 0700: results get the usual permissions
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinities) replaced by None: valid JSON, which has none."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write strict JSON atomically (indent 2, sorted keys; NaN and infinities as null)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(strict_json(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
