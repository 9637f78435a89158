"""Errors that p2pvision reports to users as one line: what went wrong, where, and how to fix it."""

from __future__ import annotations


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
