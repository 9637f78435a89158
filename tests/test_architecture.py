"""The layering (README "Architecture"): only p2pvision.cli parses arguments, and no module imports itself back
through others. ``lint-imports`` checks the full layer contract (pyproject.toml); these checks need only the source."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import p2pvision

PACKAGE = Path(p2pvision.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("p2pvision", *path.relative_to(PACKAGE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module this one imports (module level or inside functions): p2pvision modules by their file, others by
    their top-level name."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("p2pvision"):
                found.add(target.split(".")[0])
                continue
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_only_the_cli_parses_arguments(imports):
    in_cli = {name for name in imports if name == "p2pvision.cli" or name.startswith("p2pvision.cli.")}
    assert sorted(name for name, found in imports.items() if "argparse" in found and name not in in_cli) == []


def test_no_import_cycles_between_modules(imports):
    internal = {name: {t for t in found if t.startswith("p2pvision")} for name, found in imports.items()}
    # A package importing its own submodule, which imports the package back, is how packages re-export: not a cycle.
    cycles = [c for c in _cycles(internal) if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert cycles == []


def test_no_import_cycles_between_packages(imports):
    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for name, found in imports.items():
        packages.setdefault(top(name), set()).update(top(t) for t in found if t.startswith("p2pvision"))
    for name in packages:
        packages[name].discard(name)
    assert _cycles(packages) == []


def test_the_layer_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is not installed: make test installs it (pip install -e '.[test]')"
    root = PACKAGE.parent.parent
    assert (root / "pyproject.toml").is_file(), "the tests run on a source checkout (an editable install)"
    result = subprocess.run([lint, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_only_the_cli_prints() -> None:
    """The library reports progress through the ``p2pvision`` logger; printing is the CLI's."""
    printing = []
    for name, path in _modules().items():
        if name == "p2pvision.cli" or name.startswith("p2pvision.cli."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{name}:{node.lineno}")
    assert printing == []
