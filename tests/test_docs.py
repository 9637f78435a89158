"""The documentation site: it builds with warnings as errors, its generated reference pages list every command,
option, config key, registered name and public class, and every code block of its other pages runs.

The code blocks run as the README's do (``tests/test_readme.py``, whose helpers this reuses): each page in a fresh
folder holding the photos its commands name, Python blocks as written, shell commands with the README test's
documented size overrides (training gets fewer images and epochs, and here two batches per epoch as well; the
default ImageNet model of ``explain`` becomes a tiny one). A ``yaml`` block with ``title="NAME"`` is written to
that file first, as the page tells the reader to do, and ``*`` in a command is expanded as a shell would.
"""

from __future__ import annotations

import argparse
import ast
import glob
import html
import importlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from test_readme import Block, adapted, environment, run_python, shell_commands

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SOURCE = ROOT / "src"
# Appended to the training commands of the pages (after the README test's SMALL_TRAINING): the same code path.
FEW_BATCHES = ["train.trainer.limit_train_batches=2", "train.trainer.limit_val_batches=1"]
PAGES = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``strict: true`` (any warning aborts the build), in this process."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    with mock.patch.dict(os.environ, {"NO_MKDOCS_2_WARNING": "1"}):
        config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(out))
        assert config.strict, "mkdocs.yml must keep strict: true (warnings are errors)"
        build(config)  # raises mkdocs.exceptions.Abort on a warning
    return out


def page_text(site: Path, page: str) -> str:
    return (site / f"{page}.html").read_text(encoding="utf-8")


def code_spans(text: str) -> set[str]:
    """The text of every ``<code>`` element of a page (tags inside removed, entities decoded)."""
    return {html.unescape(re.sub(r"<[^>]+>", "", span)) for span in re.findall(r"<code>(.*?)</code>", text, re.S)}


# ---------------------------------------------------------------------------------------------------------------------
# The generated reference pages.


def test_every_page_of_the_site_is_built(site: Path) -> None:
    for page in PAGES:
        assert (site / page.replace(".md", ".html")).is_file(), f"{page} was not built"
    for page in ("reference/cli", "reference/config", "reference/names", "reference/api/models"):
        assert (site / f"{page}.html").is_file()


def parser_commands(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], list, Any]]:
    """``(path, actions, parser)`` of the command ``parser`` and of every subcommand below it."""
    found = [(path, [a for a in parser._actions if a.help != argparse.SUPPRESS], parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += parser_commands(sub, (*path, name))
    return found


def test_cli_reference_lists_every_command_and_argument(site: Path) -> None:
    from p2pvision.cli import build_parser

    text = page_text(site, "reference/cli")
    sections = dict(re.findall(r'<h2 id="([^"]+)"(.*?)(?=<h2 id=|\Z)', text, re.S))
    commands = parser_commands(build_parser(), ("p2pvision",))
    assert len(commands) >= 19
    for path, actions, parser in commands:
        anchor = "-".join(path)
        assert anchor in sections, f"no section for `{' '.join(path)}`"
        section = html.unescape(re.sub(r"<[^>]+>", "", sections[anchor]))
        flat = " ".join(section.replace("`", "").split())
        for action in actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            names = action.option_strings or list(action.choices or []) or [action.metavar or action.dest]
            for name in names:
                assert str(name) in section, f"`{' '.join(path)}`: {name} missing"
            if action.help:  # as --help shows it (argparse expands %(default)s and the like)
                shown = parser._get_formatter()._expand_help(action).replace("`", "")
                first_words = " ".join(shown.split()[:3])
                assert first_words in flat, f"`{' '.join(path)}`: help of {names[0]} ({first_words!r}) missing"


def schema_modules() -> list[str]:
    """Modules of p2pvision that define config schemas (subclasses of p2pvision.config.Section)."""
    modules = []
    for path in sorted((SOURCE / "p2pvision").rglob("*.py")):
        if "Section" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(SOURCE).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def json_schema_keys(schema: dict, definitions: dict, prefix: str = "") -> set[str]:
    """Dotted keys of a pydantic JSON schema (``<name>`` for mappings of names to sections)."""
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    keys: set[str] = set()
    for option in schema.get("anyOf", []) + schema.get("oneOf", []):
        keys |= json_schema_keys(option, definitions, prefix)
    for name, field in schema.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        keys.add(key)
        keys |= json_schema_keys(field, definitions, key)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and ("$ref" in extra or "properties" in extra):
        keys.add(f"{prefix}.<name>")
        keys |= json_schema_keys(extra, definitions, f"{prefix}.<name>")
    return keys


def test_config_reference_lists_every_key(site: Path) -> None:
    from p2pvision.benchmark.config import BenchmarkSchema
    from p2pvision.config import Section
    from p2pvision.train.experiment import ExperimentConfig

    text = page_text(site, "reference/config")
    keys = code_spans(text)
    # A section documented once is referred to where it comes again: "methods.<name>.train: the keys of train".
    row = r"<tr>\s*<td><code>([^<]+)</code></td>(?:(?!</tr>).)*?the keys of <code>([^<]+)</code>"
    referred = {html.unescape(key): html.unescape(other) for key, other in re.findall(row, text, re.S)}
    assert referred, "no section refers to another"
    # The structure of both config files, from pydantic's own JSON schema of them.
    for root in (ExperimentConfig, BenchmarkSchema):
        schema = root.model_json_schema()
        expected = json_schema_keys(schema, schema.get("$defs", {}))
        assert len(expected) > 20
        missing = {key for key in expected if key not in keys and not _under_reference(key, keys, referred)}
        assert not missing, f"config keys missing from the reference: {sorted(missing)}"
    # Every field of every schema, the sections JSON schemas do not spell out (``model``) included.
    for module in schema_modules():
        importlib.import_module(module)
    schemas, pending = [], [Section]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            schemas.append(sub)
    assert len(schemas) >= 10
    for schema in schemas:
        if schema.__name__.startswith("_"):
            continue
        for field in schema.model_fields:
            assert any(key == field or key.endswith(f".{field}") for key in keys), f"{schema.__name__}.{field} missing"


def _under_reference(key: str, keys: set[str], referred: dict[str, str]) -> bool:
    """Whether ``key`` lies in a section that refers to another, and that one lists the rest of the key."""
    return any(key.startswith(f"{section}.") and other + key[len(section):] in keys
               for section, other in referred.items())  # fmt: skip


def test_names_reference_lists_every_registered_name(site: Path) -> None:
    from p2pvision.baselines.base import BASELINES
    from p2pvision.benchmark.methods import METHODS
    from p2pvision.explain.base import EXPLAINERS
    from p2pvision.metrics.base import METRICS
    from p2pvision.regions.partition import PARTITIONERS
    from p2pvision.removal.base import REMOVALS

    spans = " ".join(code_spans(page_text(site, "reference/names")))
    for registry in (EXPLAINERS, REMOVALS, PARTITIONERS, METRICS, METHODS, BASELINES):
        for name in registry.names() + list(registry.aliases()):
            assert re.search(rf"(^|[\s(]){re.escape(name)}([\s,)]|$)", spans), f"{registry.kind} '{name}' missing"


def public_classes() -> dict[str, list[str]]:
    """``{module: [public classes defined in it]}`` from the source: modules and classes without a leading '_'."""
    found: dict[str, list[str]] = {}
    for path in sorted((SOURCE / "p2pvision").rglob("*.py")):
        parts = path.relative_to(SOURCE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if any(part.startswith("_") for part in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [node.name for node in tree.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
        if names:
            found[".".join(parts)] = names
    return found


def test_api_reference_lists_every_public_module_and_class(site: Path) -> None:
    classes = public_classes()
    assert sum(map(len, classes.values())) >= 100
    for module, names in classes.items():
        page = module.split(".")[1] if module.count(".") else module
        text = page_text(site, f"reference/api/{page}")
        assert f'id="{module}"' in text, f"module {module} missing from reference/api/{page}"
        for name in names:
            assert f'id="{module}.{name}"' in text, f"class {module}.{name} missing from reference/api/{page}"


# ---------------------------------------------------------------------------------------------------------------------
# The code blocks of the pages.


class DocBlock(Block):
    page: str = ""
    title: str | None = None

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line} ({self.language})"


def page_blocks(page: str) -> list[DocBlock]:
    """The ``python``, ``bash`` and titled ``yaml`` blocks of a page, in order."""
    blocks, fence, lines, start = [], None, [], 0
    for number, line in enumerate((DOCS / page).read_text(encoding="utf-8").splitlines(), start=1):
        opening = re.match(r'^```(\w*)\s*(?:title="([^"]+)")?\s*$', line)
        if opening and fence is None:
            fence, lines, start = (opening.group(1) or "text", opening.group(2)), [], number + 1
        elif line.strip() == "```" and fence is not None:
            language, title = fence
            if language in ("python", "bash") or (language == "yaml" and title):
                block = DocBlock(language, start, "\n".join(lines))
                block.page, block.title = page, title
                blocks.append(block)
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def photos(folder: Path) -> None:
    """The photos the pages' commands name (as the README test has them)."""
    from skimage import data

    for name, picture in (("photo.jpg", data.chelsea()), ("photo1.jpg", data.coffee()),
                          ("photo2.jpg", data.astronaut())):  # fmt: skip
        Image.fromarray(np.asarray(Image.fromarray(picture).resize((96, 96)))).save(folder / name)


def expand(argv: list[str], folder: Path) -> list[str]:
    """``argv`` with each ``*`` pattern replaced by the matching files, sorted, as a shell does."""
    out = []
    for token in argv:
        matches = sorted(glob.glob(token, root_dir=folder)) if "*" in token else []
        assert matches or "*" not in token, f"`{token}` matches no file"
        out += matches or [token]
    return out


def serve_briefly(argv: list[str], folder: Path) -> None:
    """Start ``label serve`` on a free port, fetch its page, stop it with SIGTERM: it answers and exits cleanly."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    process = subprocess.Popen([*argv, "--port", port], cwd=folder, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()  # type: ignore[union-attr]
                time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0 and "Traceback" not in output, output


def run_shell(block: DocBlock, folder: Path) -> None:
    for command in shell_commands(block):
        argv = adapted(command)
        if command.startswith("p2pvision train"):
            argv += FEW_BATCHES
        argv = expand(argv, folder)
        if argv[1:3] == ["label", "serve"]:
            serve_briefly(argv, folder)
            continue
        result = subprocess.run(argv, cwd=folder, env=environment(), capture_output=True, text=True, timeout=900)
        output = f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, f"{block}: `{command}` failed:\n{output}"


CODE_PAGES = [page for page in PAGES if any(b.language != "yaml" for b in page_blocks(page))]


@pytest.mark.slow
@pytest.mark.parametrize("page", CODE_PAGES)
def test_the_code_blocks_of_a_page_run(page: str, tmp_path: Path) -> None:
    blocks = page_blocks(page)
    photos(tmp_path)
    pending: list[Block] = []  # Python blocks wait for the next shell block (or the end) and run together
    for block in blocks:
        if block.language == "python":
            pending.append(block)
            continue
        run_python(pending, tmp_path)
        pending = []
        if block.language == "yaml":
            (tmp_path / str(block.title)).write_text(block.text + "\n", encoding="utf-8")
        else:
            run_shell(block, tmp_path)
    run_python(pending, tmp_path)


def test_the_pages_with_code_are_found_and_parsed() -> None:
    assert {"getting-started.md", "concepts/p2p.md", "tutorials/train-image-folder.md", "tutorials/benchmark.md",
            "tutorials/explain-torchvision.md", "tutorials/label-inv.md"} <= set(CODE_PAGES)  # fmt: skip
    blocks = page_blocks("tutorials/benchmark.md")
    assert [b.title for b in blocks if b.language == "yaml"] == ["compare.yaml"]
    assert expand(["p2pvision", "*.md"], DOCS) == ["p2pvision", "getting-started.md", "index.md"]
    assert sys.executable  # the blocks run with this interpreter (test_readme.run_python)
