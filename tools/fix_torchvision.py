"""Make ``import torchvision`` work in a Python environment whose torchvision cannot load its compiled ops.

Run it with the python of the environment to fix (the Makefile does, after installing)::

    .venv/bin/python tools/fix_torchvision.py            # install the fix only if this environment needs it
    .venv/bin/python tools/fix_torchvision.py --remove   # take it out again

Some package registries carry only CUDA-linked torchvision builds: next to a CPU-only torch wheel, their compiled
part needs absent CUDA libraries and ``import torchvision`` fails with ``operator torchvision::nms does not exist``.
This script checks, in a fresh interpreter, whether ``import torchvision`` works. Only if it fails with that error
does it copy ``torchvision_cpu_fix.py`` (next to this script) into the environment's site-packages with a ``.pth``
line, so that every interpreter of the environment declares the two missing operator schemas when torchvision is
first imported (see that module). Where torchvision imports normally it installs nothing (and removes an earlier
copy). Exit code 0 when torchvision imports (or is not installed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

MODULE = "torchvision_cpu_fix"
SOURCE = Path(__file__).with_name(f"{MODULE}.py")
PTH_LINE = f"import {MODULE}; {MODULE}.install()\n"
FAILURE = re.compile(r"operator torchvision::\w+ does not exist")


def _import_torchvision(site: Path, with_fix: bool) -> subprocess.CompletedProcess[str]:
    """``import torchvision`` (and its transforms) in a fresh interpreter of this environment."""
    env = {key: value for key, value in os.environ.items() if key != "TORCHVISION_CPU_FIX"}
    if not with_fix:
        env["TORCHVISION_CPU_FIX"] = "0"  # an installed copy stands aside, so the bare environment is checked
    code = f"import site; site.addsitedir({str(site)!r}); import torchvision, torchvision.transforms"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def remove(site: Path) -> bool:
    """Remove the fix from ``site``; True if there was one."""
    found = False
    for path in (site / f"{MODULE}.pth", site / f"{MODULE}.py"):
        if path.exists():
            path.unlink()
            found = True
    (site / "__pycache__" / f"{MODULE}.{sys.implementation.cache_tag}.pyc").unlink(missing_ok=True)
    return found


def install(site: Path) -> None:
    """Copy the fix module (and its bytecode) into ``site``; add the ``.pth`` line that arms it at interpreter
    start."""
    shutil.copyfile(SOURCE, site / f"{MODULE}.py")
    py_compile.compile(str(site / f"{MODULE}.py"), doraise=True)  # every start reads the bytecode, as pip's files
    (site / f"{MODULE}.pth").write_text(PTH_LINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remove", action="store_true", help="remove the fix from the environment")
    parser.add_argument(
        "--site", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
        help="site-packages folder to install into (default: this python's, %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    site: Path = args.site
    if args.remove:
        print(f"fix_torchvision: {'removed the fix from' if remove(site) else 'no fix to remove in'} {site}")
        return 0
    bare = _import_torchvision(site, with_fix=False)
    if bare.returncode == 0:
        note = " (removed the fix installed earlier)" if remove(site) else ""
        print(f"fix_torchvision: torchvision imports in {sys.executable}: nothing to fix{note}")
        return 0
    if "No module named 'torchvision'" in bare.stderr:
        print(f"fix_torchvision: torchvision is not installed for {sys.executable}: nothing to fix")
        return 0
    failure = FAILURE.search(bare.stderr)
    if failure is None:
        print(f"fix_torchvision: import torchvision fails with an error this fix does not address: "
              f"{_last_line(bare.stderr)}", file=sys.stderr)  # fmt: skip
        return 1
    install(site)
    fixed = _import_torchvision(site, with_fix=True)
    if fixed.returncode != 0:
        remove(site)
        print(f"fix_torchvision: the fix did not help ({_last_line(fixed.stderr)}); nothing installed",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"fix_torchvision: torchvision's compiled ops do not load here ({failure.group(0)}); "
          f"installed {MODULE}.py and {MODULE}.pth in {site}: they declare the missing operator schemas when "
          "torchvision is first imported (remove with --remove)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
