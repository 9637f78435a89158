"""Fail fast: a wrong method, removal or parameter, and a missing image or checkpoint, are one line (exit code 2)
before torch or a model loads; the names the command line checks then, read from the registries' source, are the
registries' own."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from p2pvision.cli.explain import DECLARED_EXPLAINERS, DECLARED_REMOVALS, declared_annotations
from p2pvision.config import allowed
from p2pvision.registry import DeclaredRegistry

NO_TORCH_CASES = {
    "explain: misspelt method": ["explain", "{photo}", "--method", "mxi"],
    "explain: missing image": ["explain", "{missing}", "--method", "moxi"],
    "explain: every image missing": ["explain", "{missing}", "{missing2}", "--method", "grad_cam"],
    "explain: unknown parameter": ["explain", "{photo}", "--method", "lime", "--param", "samples=3"],
    "explain: parameter out of range": ["explain", "{photo}", "--method", "rise", "--param", "keep_probability=1.5"],
    "explain: removal of a gradient method": ["explain", "{photo}", "--method", "grad_cam", "--removal", "blur"],
    "explain: misspelt removal": ["explain", "{photo}", "--method", "sp", "--removal", "blurr"],
    "explain: missing checkpoint": ["explain", "{photo}", "--method", "moxi", "--checkpoint", "{missing_dir}"],
    "predict: missing checkpoint": ["predict", "{missing_dir}", "{photo}"],
    "predict: missing image": ["predict", "{folder}", "{missing}"],
    "evaluate: missing checkpoint": ["evaluate", "{missing_dir}"],
    "inv explain: missing image": ["inv", "explain", "{missing}"],
    "inv explain: missing checkpoint": ["inv", "explain", "{photo}", "--checkpoint", "{missing_dir}"],
}

# Runs every case in one fresh interpreter; after each, torch must not have been imported.
RUNNER = """
import contextlib, io, json, sys
from p2pvision.cli import main
results = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results[name] = {"code": code, "err": err.getvalue(), "torch": "torch" in sys.modules}
    if "torch" in sys.modules:
        break
print(json.dumps(results))
"""


def test_mistakes_are_reported_before_torch_loads(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not read: every case fails before images are opened")
    folder = tmp_path / "model"
    folder.mkdir()
    values = {"photo": photo, "missing": tmp_path / "missing.png", "missing2": tmp_path / "gone.jpg",
              "missing_dir": tmp_path / "no_model", "folder": folder}  # fmt: skip
    cases = {name: [part.format(**values) for part in argv] for name, argv in NO_TORCH_CASES.items()}
    process = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cases)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)  # fmt: skip
    assert process.returncode == 0, process.stderr
    results = json.loads(process.stdout)
    for name in cases:
        assert name in results, f"not run: an earlier case imported torch ({results})"
        result = results[name]
        lines = result["err"].strip().splitlines()
        assert not result["torch"], f"{name}: torch was imported before the error"
        assert result["code"] == 2 and lines and all(line.startswith("p2pvision: error: ") for line in lines), (
            name,
            result,
        )
    assert "did you mean 'moxi'?" in results["explain: misspelt method"]["err"]
    assert "did you mean 'num_samples'?" in results["explain: unknown parameter"]["err"]
    assert "keep_probability: got 1.5" in results["explain: parameter out of range"]["err"]
    assert "does not remove regions" in results["explain: removal of a gradient method"]["err"]
    assert "did you mean 'blur'?" in results["explain: misspelt removal"]["err"]
    assert len(results["explain: every image missing"]["err"].strip().splitlines()) == 2
    assert "no_model' does not exist" in results["evaluate: missing checkpoint"]["err"]
    assert not list(tmp_path.glob("results*"))  # nothing written


def test_the_early_missing_image_message_is_the_loaders(tmp_path: Path) -> None:
    from p2pvision.cli.inputs import all_images_missing
    from p2pvision.errors import ImageLoadError
    from p2pvision.io import load_image

    missing = tmp_path / "missing.png"
    with pytest.raises(ImageLoadError) as loaded:
        load_image(missing)
    assert all_images_missing([str(missing)]) == [(str(missing), str(loaded.value))]
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")
    assert all_images_missing([str(missing), str(photo)]) == []  # the existing file still gets its turn


REAL = """
import inspect, json
from p2pvision.config import _parameters, allowed

def phrase(annotation):  # what a value may be, as the one-line errors say it
    try:
        return allowed(annotation)
    except Exception as exc:
        return f"({type(exc).__name__})"
from p2pvision.explain import EXPLAINERS, PerturbationExplainer
from p2pvision.removal import REMOVALS
out = {}
for label, registry in (("explainers", EXPLAINERS), ("removals", REMOVALS)):
    members = {}
    for name in registry.names():
        cls = registry.get(name)
        parameters = {
            key: repr(p.default) if p.default is not p.empty else None
            for key, p in inspect.signature(cls).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        annotations = {key: phrase(value) for key, value in _parameters(cls).items()} if label == "explainers" else {}
        members[name] = {"removes": label == "explainers" and issubclass(cls, PerturbationExplainer),
                         "parameters": parameters, "annotations": annotations}
    out[label] = {"names": registry.names(), "aliases": registry.aliases(), "members": members}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    """The registries as a fresh interpreter discovers them (registration order depends on import history)."""
    process = subprocess.run([sys.executable, "-c", REAL], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout)


@pytest.mark.parametrize("label", ["explainers", "removals"])
def test_declared_names_are_the_registrys(real, label: str) -> None:
    declared = DECLARED_EXPLAINERS if label == "explainers" else DECLARED_REMOVALS
    assert declared.complete
    assert declared.names() == real[label]["names"]
    assert declared.aliases() == real[label]["aliases"]
    assert "rise" in real["explainers"]["names"]


def test_declared_parameters_are_the_constructors(real) -> None:
    for name, expected in real["explainers"]["members"].items():
        member = DECLARED_EXPLAINERS.get(name)
        assert ("PerturbationExplainer" in member.ancestors) == expected["removes"], name
        assert member.parameters is not None, name
        assert list(member.parameters) == list(expected["parameters"]), name
        for key, parameter in member.parameters.items():
            if parameter.default is None:
                assert expected["parameters"][key] is None, (name, key)
                continue
            try:
                default = repr(ast.literal_eval(parameter.default))
            except ValueError:  # not a literal (a constant's name): only its presence can be compared
                default = expected["parameters"][key]
            assert default == expected["parameters"][key] is not None, (name, key)
        for key, annotation in declared_annotations(member).items():  # Any: left to the registry's check
            assert annotation is Any or allowed(annotation) == expected["annotations"][key], (name, key)


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_declared_registry_reads_names_aliases_and_inherited_settings(tmp_path, monkeypatch) -> None:
    _package(tmp_path, {
        "fakepkg/__init__.py": "",
        "fakepkg/base.py": """
            from fakepkg._registry import REG
            class Base:
                name = "base_default"
                def __init__(self, model, size: int = 3, **extra):
                    pass
            """,
        "fakepkg/_registry.py": "REG = object()\n",
        "fakepkg/b_second.py": """
            from .base import Base
            from fakepkg._registry import REG
            @REG.register(aliases=("two",))
            class Second(Base):
                name = "second"
            """,
        "fakepkg/a_first.py": """
            from fakepkg import b_second
            from fakepkg.base import Base
            from fakepkg._registry import REG
            @REG.register("first")
            class First(b_second.Second):
                def __init__(self, model, depth: float = 0.5):
                    pass
            @REG.register()
            class Inherits(Base):
                pass
            """,
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    declared = DeclaredRegistry("thing", "fakepkg", "REG")
    assert declared.complete
    assert declared.names() == ["second", "first", "base_default"]  # a_first imports b_second first
    assert declared.aliases() == {"two": "second"}
    first = declared.get("first")
    assert first.ancestors[:2] == ("b_second.Second", "Base") and not first.any_keyword
    assert {key: p.default for key, p in first.parameters.items()} == {"model": None, "depth": "0.5"}
    assert declared.get("two").any_keyword and declared.get("base_default").parameters["size"].annotation == "int"
    assert "fakepkg.a_first" not in sys.modules and "fakepkg.base" not in sys.modules


def test_a_registration_the_source_cannot_show_leaves_names_to_the_registry(tmp_path, monkeypatch) -> None:
    _package(tmp_path, {
        "dynpkg/__init__.py": "",
        "dynpkg/plain.py": """
            from dynpkg.reg import REG
            @REG.register()
            class Plain:
                name = "plain"
            """,
        "dynpkg/made.py": """
            from dynpkg.reg import REG
            for kind in ("x", "y"):
                REG.register(kind)(type(kind, (), {}))
            """,
        "dynpkg/reg.py": "REG = object()\n",
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    declared = DeclaredRegistry("thing", "dynpkg", "REG")
    assert declared.names() == ["plain"] and not declared.complete
