"""Checked command-line values: numbers in their ranges and output folders that can be written, converted by
argparse before any work starts, and a parser whose errors are one line (``p2pvision: error: ...``)."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from p2pvision.errors import path_problem


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and its subcommands' parsers) that reports a wrong argument in one line."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # values such as -inf, -nan or -1e-3 are values (refused by the option's range check, which names them),
        # not unknown options ("expected one argument")
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"p2pvision: error: {message} (see '{self.prog} --help')\n")


def _number(kind: type, check: Callable[[float], bool], allowed: str) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}; must be {allowed}") from None
        if isinstance(value, float) and not math.isfinite(value) or not check(value):
            raise argparse.ArgumentTypeError(f"got {text!r}; must be {allowed}")
        return value

    convert.__name__ = allowed  # argparse names the type in its own messages
    return convert


positive_int = _number(int, lambda value: value >= 1, "an integer >= 1")
non_negative_int = _number(int, lambda value: value >= 0, "an integer >= 0")
port = _number(int, lambda value: 0 <= value <= 65535, "a port number in [0, 65535]")
certainty = _number(float, lambda value: 0 < value < 1, "a number in (0, 1)")
budget = _number(float, lambda value: 0 < value <= 1, "a number in (0, 1]")
object_scale = _number(float, lambda value: 0.1 <= value <= 1, "a number in [0.1, 1]")


def output_folder(text: str) -> Path:
    """A folder results can be written to: absent (its nearest existing parent a writable folder) or a writable
    folder; never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a file, not a folder: name a folder for the results")
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a link to nowhere, or a loop of links: nothing can be created through it
            problem = path_problem(existing, "folder")
            raise argparse.ArgumentTypeError(f"'{existing}' {problem}, so '{text}' cannot be created: name a folder")
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"'{existing}' is a file, so '{text}' cannot be created: name a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"'{existing}' is not writable: name a folder you can write to")
    return path


def output_file(text: str) -> Path:
    """A file results can be written to: not a folder, in a folder that exists or can be created and written."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is a folder: name a file to write")
    output_folder(str(path.parent))
    return path


def png_file(text: str) -> Path:
    """A PNG file results can be written to (see :func:`output_file`), named ``*.png``."""
    path = output_file(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"'{text}' does not end in .png: name a PNG file to write")
    return path
