"""``import torchvision`` works with the CPU torch wheel, and the fix does nothing where ops already exist."""

import subprocess
import sys

import torch

from p2pvision import _torchvision_compat


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_torchvision_and_timm_import_after_p2pvision():
    out = _run(
        "import p2pvision, timm, torchvision, torch\n"
        "from torchvision.transforms import v2\n"
        "m = torchvision.models.resnet18(weights=None)\n"
        "print(m.eval()(torch.rand(1, 3, 32, 32)).shape[-1])"
    )
    assert out == "1000"


def test_does_nothing_when_torchvision_ops_exist():
    out = _run(
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'FRAGMENT')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "import p2pvision._torchvision_compat as c\n"
        "print(c.ensure_torchvision_importable(), c.patched())"
    )
    assert out == "False False"


def test_importing_p2pvision_does_not_load_torch():
    assert _run("import sys, p2pvision; print('torch' in sys.modules, 'torchvision' in sys.modules)") == "False False"


def test_second_call_is_a_no_op():
    import torchvision  # noqa: F401

    assert _torchvision_compat.ensure_torchvision_importable() is False
    assert torch._C._dispatch_find_schema_or_throw("torchvision::nms", "") is not None
