"""Make ``import torchvision`` work with a CPU torch wheel next to a CUDA-linked torchvision build.

Some machines get torchvision's compiled extension built against CUDA libraries that are absent. Its
Python part still works, but importing it fails in ``torchvision._meta_registrations`` with
``operator torchvision::nms does not exist``. Before torchvision is imported we try to load its
compiled ops the way torchvision does; only if that fails do we declare the two operator schemas its
import needs (``nms`` and ``qnms``), without kernels. Where torchvision loads normally this does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_fallback_library = None  # the torch.library.Library holding the declared schemas


def _compiled_ops_path() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    return candidates[0] if candidates else None


def _op_exists(name: str) -> bool:
    import torch

    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def ensure_torchvision_importable() -> bool:
    """Declare torchvision's operator schemas if its compiled ops cannot load. Returns True if it patched."""
    import torch

    global _fallback_library
    if "torchvision" in sys.modules or _fallback_library is not None:
        return False
    path = _compiled_ops_path()
    if path is None:  # torchvision not installed: nothing to do
        return False
    try:
        torch.ops.load_library(str(path))
    except (OSError, RuntimeError):
        pass
    missing = [name for name in _SCHEMAS if not _op_exists(name)]
    if not missing:
        return False
    _fallback_library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _fallback_library.define(_SCHEMAS[name])
    return True


def patched() -> bool:
    """Whether the fallback schemas were declared in this process."""
    return _fallback_library is not None


class _BeforeTorchvisionImport(importlib.abc.MetaPathFinder):
    """Runs :func:`ensure_torchvision_importable` when ``torchvision`` is first imported, then steps aside."""

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001 (importlib protocol)
        if fullname == "torchvision":
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            ensure_torchvision_importable()
        return None  # the regular finders import the module


def install_import_hook() -> None:
    """Arrange for the fix to run just before torchvision's first import (now, if torch is already loaded)."""
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvisionImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _BeforeTorchvisionImport())
