"""A clean environment: ``import torchvision`` works in the project's environment without p2pvision (the fix, where
needed, is the environment's: ``tools/fix_torchvision.py``), and the library installs no import hooks."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def _run(code: str, **kwargs) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_torchvision_and_timm_import_without_p2pvision():
    out = _run(
        "import sys, torch, torchvision, timm\n"
        "from torchvision.transforms import v2\n"
        "torchvision.transforms.Compose([torchvision.transforms.CenterCrop(8)])\n"
        "m = torchvision.models.resnet18(weights=None)\n"
        "print(m.eval()(torch.rand(1, 3, 32, 32)).shape[-1], any(n.startswith('p2pvision') for n in sys.modules))"
    )
    assert out == "1000 False"


def test_no_import_hook_in_the_library():
    hooks = re.compile(r"sys\.meta_path|sys\.path_hooks|builtins\.__import__|__builtins__\[.__import__.\]")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "src").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if hooks.search(line)
    ]
    assert not found, found


def test_importing_p2pvision_does_not_load_torch():
    assert _run("import sys, p2pvision; print('torch' in sys.modules, 'torchvision' in sys.modules)") == "False False"


def test_interpreter_start_does_not_import_torch():
    assert _run("import sys; print('torch' in sys.modules)") == "False"


def test_the_fix_declares_nothing_when_torchvision_ops_exist():
    out = _run(
        "import torch\n"
        "lib = torch.library.Library('torchvision', 'FRAGMENT')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "lib.define('qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "import torchvision_cpu_fix as fix\n"
        "print(fix.apply(), fix._library is None)",
        env={**os.environ, "PYTHONPATH": str(TOOLS)},
    )
    assert out == "False True"


def test_fix_script_installs_nothing_where_torchvision_imports(tmp_path: Path):
    fake = tmp_path / "fake" / "torchvision"  # a torchvision that imports, first on the path: a normal machine
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "transforms.py").write_text("")
    site = tmp_path / "site"
    site.mkdir()
    result = subprocess.run(
        [sys.executable, str(TOOLS / "fix_torchvision.py"), "--site", str(site)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(fake.parent)},
    )  # fmt: skip
    assert result.returncode == 0 and "nothing to fix" in result.stdout, result.stdout + result.stderr
    assert not list(site.iterdir())
