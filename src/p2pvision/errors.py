"""Errors that p2pvision reports to users as one line: what went wrong, where, and how to fix it."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class P2PVisionError(Exception):
    """Base class for user-facing errors. The CLI prints ``str(error)`` as one line and exits with code 2."""


class ImageLoadError(P2PVisionError, ValueError):
    """An image file cannot be used (missing, empty, corrupt, truncated, not an image, too large)."""


class DatasetLayoutError(P2PVisionError, ValueError):
    """A data set folder does not have the expected layout; the message says what was expected where."""


class ConfigError(P2PVisionError, ValueError):
    """A parameter or configuration value is invalid; the message names the value and the valid range."""


class WeightsError(P2PVisionError, ValueError):
    """Pretrained weights cannot be found or do not fit the requested architecture."""


def path_problem(path: str | os.PathLike[str], kind: str = "file") -> str | None:
    """What stops ``path`` being read as a ``kind`` ("file" or "folder"), said as it is, to follow the quoted path
    in a message (``f"'{path}' {problem}"``), or None when nothing does: it does not exist, it is a link to a
    missing file or a link loop, it is the other kind, a pipe or device, or it cannot be read."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"is a symbolic link to a missing {kind}" if path.is_symlink() else "does not exist"
    except OSError as exc:  # ELOOP: a link cycle; ENOTDIR: a parent is a file; ENAMETOOLONG...
        if exc.errno == errno.ELOOP:
            return "cannot be resolved: its symbolic links form a loop"
        return f"cannot be read ({(exc.strerror or str(exc)).lower()})"
    if kind == "folder":
        if not stat.S_ISDIR(info.st_mode):
            return "is a file, not a folder"
        return None if os.access(path, os.R_OK | os.X_OK) else "cannot be read (permission denied)"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a pipe, socket or device)"
    return None if os.access(path, os.R_OK) else "cannot be read (permission denied)"
