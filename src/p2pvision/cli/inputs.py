"""Commands that take many input files: each file succeeds or fails on its own, the failures are listed at the end
(one line each: the file, the reason and the fix) and the exit code says how it went.

Exit codes of every ``p2pvision`` command: 0 success; 1 some inputs failed (the others have their full output);
2 an error before any output (a wrong option, value, file or checkpoint; or every input failed); 130 interrupted
(Ctrl-C, SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from p2pvision.errors import ConfigError

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def _absent(path: Path) -> bool:
    """``path`` does not exist (a dangling link or an unreadable path is left to the loaders' own messages)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return not path.is_symlink()
    except OSError:
        return False
    return False


def all_images_missing(names: Sequence[str]) -> list[tuple[str, str]]:
    """When none of the image files ``names`` exists: ``(file, reason)`` for each, the loader's own one-line
    message, so that a command fails at once instead of after torch and the model load; else ``[]`` (the files
    that do exist get their output and the missing ones are listed at the end, as any file that fails)."""
    missing = [
        (name, f"cannot load image '{Path(name)}': the file does not exist; check the path and the working directory")
        for name in names
        if _absent(Path(name))
    ]
    return missing if names and len(missing) == len(names) else []


def check_checkpoint_exists(path: str | os.PathLike[str], what: str = "P2P") -> None:
    """A one-line error, before anything heavy loads, when the checkpoint ``path`` does not exist (the loader
    checks the rest: its files, format and weights)."""
    if _absent(Path(path)):
        raise ConfigError(f"{what} checkpoint '{path}' does not exist: name a folder with config.json and "
                          "model.safetensors (as written by 'p2pvision train')")  # fmt: skip


def report_failures(failures: Sequence[tuple[str, str]], total: int) -> int:
    """Print one ``p2pvision: error:`` line per failed input to stderr; the exit code for ``total`` inputs."""
    for _file, reason in failures:
        print(f"p2pvision: error: {reason}", file=sys.stderr)
    if not failures:
        return EXIT_OK
    if len(failures) < total:
        print(f"p2pvision: {len(failures)} of {total} inputs failed; the others have their output", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_ERROR
