"""The README as a tested tutorial: every ``python`` and ``bash`` block runs, in the order written, in one fresh
folder holding the photos the commands name, offline.

Python blocks run as written, each in its own interpreter. Shell commands run as written with two documented
exceptions that keep the suite to minutes on 2 CPU cores: training commands get size overrides appended (fewer
images and epochs: the same code path, smaller), and commands that explain with the default ImageNet model get
``--model test_resnet --weights none`` (their 224 px cost is measured in the README's cost table instead).
``make demo`` / ``make test`` are the test itself (and tests/test_p2p_cli.py runs the demo job); ``label serve``
and ``explore`` are started, answer a page and are stopped (SIGTERM: they stop cleanly, exit 0).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
P2PVISION = Path(sys.executable).with_name("p2pvision")
# Appended to the README's commands in this test only (see the module docstring).
SMALL_TRAINING = ["data.n_train=128", "data.n_val=32", "data.n_test=32", "train.epochs=2", "train.warmup_epochs=1",
                  "train.batch_size=32"]  # fmt: skip
# Runs the README's Python blocks (a JSON list on stdin) in one interpreter, each in a fresh namespace, so that
# none can lean on another's names; prints the index and error of the first that fails.
PYTHON_RUNNER = """
import json, sys, traceback
for index, code in enumerate(json.load(sys.stdin)):
    try:
        exec(compile(code, f"<README block {index}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"FAILED {index}", traceback.format_exc(), sep="\\n")
        sys.exit(1)
"""
SMALL_DATA = {"--n": "200"}
TINY_MODEL = ["--model", "test_resnet", "--weights", "none"]
SKIPPED = ("make demo", "make test")  # they run this test; the demo job is tests/test_p2p_cli.py's


@dataclass
class Block:
    language: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def readme_blocks() -> list[Block]:
    """Every fenced ``python`` and ``bash`` block of the README, with its first line number."""
    blocks, language, start, lines = [], None, 0, []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and language is None:
            language, start, lines = fence.group(1) or "text", number + 1, []
        elif fence:
            if language in ("python", "bash", "sh", "shell"):
                blocks.append(Block("python" if language == "python" else "bash", start, "\n".join(lines)))
            language = None
        elif language is not None:
            lines.append(line)
    return blocks


def shell_commands(block: Block) -> list[str]:
    """The commands of a shell block: comments dropped, continuation lines joined."""
    commands, pending = [], ""
    for line in block.text.splitlines():
        code = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        pending = f"{pending} {code.rstrip(chr(92)).strip()}".strip() if code else pending
        if code and not code.endswith("\\"):
            commands.append(pending)
            pending = ""
    return commands


def adapted(command: str) -> list[str]:
    """The command's arguments, with this test's size overrides (see the module docstring)."""
    argv = shlex.split(command)
    if argv[:2] == ["p2pvision", "train"]:
        argv += SMALL_TRAINING
    if (argv[:2] == ["p2pvision", "explain"] or argv[:3] == ["p2pvision", "inv", "explain"]) and "--model" not in argv:
        argv += TINY_MODEL
    for option, value in SMALL_DATA.items():
        if argv[:2] == ["p2pvision", "data"] and option in argv:
            argv[argv.index(option) + 1] = value
    if argv[0] == "p2pvision":
        argv[0] = str(P2PVISION)
    return argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder with the photos the README's commands name."""
    from skimage import data

    folder = tmp_path_factory.mktemp("readme")
    for name, picture in (("photo.jpg", data.chelsea()), ("photo1.jpg", data.coffee()),
                          ("photo2.png", data.astronaut()), ("photo2.jpg", data.rocket())):  # fmt: skip
        Image.fromarray(np.asarray(Image.fromarray(picture).resize((96, 96)))).save(folder / name)
    return folder


def environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def serve_briefly(argv: list[str], workdir: Path) -> None:
    """Start a server command (``label serve``, ``explore``), fetch its page, stop it with SIGTERM (SIGINT is
    ignored by processes started in the background by a non-interactive shell, as CI may be): it must answer and
    exit cleanly."""
    port = "8799"
    process = subprocess.Popen([*argv, "--port", port], cwd=workdir, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
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
        try:
            output = process.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0 and "stopped;" in output and "Traceback" not in output, output


def run_python(blocks: list[Block], workdir: Path) -> None:
    """The Python blocks ``blocks`` in one interpreter (see PYTHON_RUNNER), in order."""
    if not blocks:
        return
    result = subprocess.run([sys.executable, "-c", PYTHON_RUNNER], input=json.dumps([b.text for b in blocks]),
                            cwd=workdir, env=environment(), capture_output=True, text=True, timeout=900)  # fmt: skip
    if result.returncode != 0:
        failed = re.search(r"FAILED (\d+)", result.stdout)
        block = blocks[int(failed.group(1))] if failed else blocks[0]
        pytest.fail(f"{block} failed:\n{block.text}\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def test_the_readme_runs_as_written(workdir: Path) -> None:
    blocks = readme_blocks()
    assert sum(block.language == "python" for block in blocks) >= 8 and len(blocks) >= 12
    pending: list[Block] = []  # Python blocks wait for the next shell block (or the end) and run together
    for block in blocks:
        if block.language == "python":
            pending.append(block)
            continue
        run_python(pending, workdir)
        pending = []
        for command in shell_commands(block):
            if command.startswith(SKIPPED):
                continue
            argv = adapted(command)
            if argv[1:3] == ["label", "serve"] or argv[1:2] == ["explore"]:
                serve_briefly(argv, workdir)
                continue
            result = subprocess.run(argv, cwd=workdir, env=environment(), capture_output=True, text=True,
                                    timeout=900)  # fmt: skip
            output = f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            assert result.returncode == 0, f"{block}: `{command}` failed:\n{output}"
    run_python(pending, workdir)


def test_the_readme_parser_finds_blocks_and_joins_continuations() -> None:
    block = Block("bash", 1, "p2pvision a \\\n  --b c   # note\n# only a comment\np2pvision d  # x\n")
    assert shell_commands(block) == ["p2pvision a --b c", "p2pvision d"]
    assert adapted("p2pvision explain --method moxi photo.jpg")[-4:] == TINY_MODEL
    assert adapted("p2pvision train --config x")[-len(SMALL_TRAINING):] == SMALL_TRAINING
