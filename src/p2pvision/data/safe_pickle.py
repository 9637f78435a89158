"""Reading the pickle-based files of public data sets without running code from them.

CIFAR-10's python batches are pickled dicts and BAM's ``val_mask`` is a NumPy object array (which ``.npy`` stores
as a pickle). ``pickle.load`` and ``np.load(allow_pickle=True)`` import and call whatever a file names, so a
crafted file runs code. :func:`safe_unpickle` admits only what those official files hold: plain Python values
(dicts, lists, tuples, bytes, strings, numbers) and NumPy arrays and dtypes; anything else is refused with an error
naming the file and what it tried to load.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import IO, Any

import numpy as np

from p2pvision.errors import DatasetLayoutError

try:  # NumPy 2 moved the private module that array pickles name; files name either
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# (module, name) -> object: the only globals an official CIFAR-10 batch or BAM mask file refers to.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, handle: IO[bytes], path: Path) -> None:
        super().__init__(handle, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise DatasetLayoutError(
                f"'{self.path}' asks to load {module}.{name}, which no data file needs: refused (it could run code); "
                "use the official files"
            )
        return allowed


def safe_unpickle(handle: IO[bytes], path: str | os.PathLike[str], what: str = "pickle") -> Any:
    """The object pickled in ``handle`` (read from ``path``, a ``what`` for error messages), loading only plain
    values and NumPy arrays."""
    try:
        return _RestrictedUnpickler(handle, Path(path)).load()
    except DatasetLayoutError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DatasetLayoutError(f"'{path}' is not a readable {what} ({type(exc).__name__}: {exc}): re-download it") \
            from exc


def load_pickle_file(path: str | os.PathLike[str], what: str = "pickle") -> Any:
    """:func:`safe_unpickle` of a whole file."""
    with Path(path).open("rb") as handle:
        return safe_unpickle(handle, path, what)


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """A ``.npy`` array; an object array's pickled payload goes through :func:`safe_unpickle` instead of
    ``np.load(allow_pickle=True)``."""
    path = Path(path)
    data = path.read_bytes()
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            _, _, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not one NumPy writes object arrays in")
    except ValueError as exc:
        raise DatasetLayoutError(f"'{path}' is not a NumPy .npy file ({exc})") from exc
    if not dtype.hasobject:
        return np.load(io.BytesIO(data), allow_pickle=False)
    array = safe_unpickle(handle, path, "NumPy object array")
    if not isinstance(array, np.ndarray):
        raise DatasetLayoutError(f"'{path}' holds a {type(array).__name__}: expected a NumPy array")
    return array
