"""Make ``import torchvision`` work where torchvision's compiled ops cannot load (a CUDA-linked torchvision build
next to a CPU-only torch wheel). An environment fix, not part of p2pvision: ``tools/fix_torchvision.py`` copies
this file into an environment's site-packages, with a ``.pth`` line that calls :func:`install` at interpreter
start, and only where ``import torchvision`` fails with ``operator torchvision::nms does not exist``.

At start it imports nothing (no torch: that would cost every interpreter about a second); it only puts a finder on
``sys.meta_path`` that waits for torchvision's first import. Then it removes itself and, if torchvision's compiled
ops cannot be loaded, declares the two operator schemas torchvision's import needs (``nms`` and ``qnms``), without
kernels. Transforms, models, local datasets and utils work; ``torchvision.ops.nms`` and ``torchvision.io``'s
decoders do not. Where the compiled ops load (a GPU machine), it declares nothing.

``TORCHVISION_CPU_FIX=0`` in the environment switches it off for a process; ``python tools/fix_torchvision.py
--remove`` removes it.
"""

import os
import sys

SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # the torch.library.Library holding the declared schemas, once declared


def _declared(torch, name: str) -> bool:  # torch: the module, imported by the caller
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def apply() -> bool:
    """Declare the schemas torchvision's import needs if its compiled ops cannot load; True if it declared any."""
    global _library
    import importlib.util
    from pathlib import Path

    import torch

    if _library is not None:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations)))
    compiled = sorted(folder.glob("_C*.so")) + sorted(folder.glob("_C*.pyd"))
    if not compiled:
        return False
    try:
        torch.ops.load_library(str(compiled[0]))  # what torchvision does; it fails where CUDA libraries are absent
    except (OSError, RuntimeError):
        pass
    missing = [name for name in SCHEMAS if not _declared(torch, name)]
    if not missing:
        return False
    _library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _library.define(SCHEMAS[name])
    return True


class _BeforeTorchvision:
    """A meta-path finder that finds nothing: at torchvision's first import it steps aside and runs :func:`apply`,
    then the regular finders import torchvision."""

    @classmethod
    def find_spec(cls, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "torchvision":
            if cls in sys.meta_path:
                sys.meta_path.remove(cls)
            apply()
        return None


def install() -> None:
    """Wait for torchvision's first import (called by the ``.pth`` line at interpreter start)."""
    if os.environ.get("TORCHVISION_CPU_FIX", "1") == "0" or "torchvision" in sys.modules:
        return
    if _BeforeTorchvision not in sys.meta_path:
        sys.meta_path.insert(0, _BeforeTorchvision)
