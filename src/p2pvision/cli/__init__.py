"""The ``p2pvision`` command: thin wrappers that parse arguments, call the library and say where results went."""

from __future__ import annotations

import argparse
import logging
import platform
import re
import signal
import sys
import threading
from collections.abc import Sequence

from p2pvision.cli.arguments import Parser
from p2pvision.cli.benchmark import add_benchmark_command
from p2pvision.cli.data import add_data_command
from p2pvision.cli.explain import add_explain_command
from p2pvision.cli.explore import add_explore_command
from p2pvision.cli.inputs import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from p2pvision.cli.inv import add_inv_commands
from p2pvision.cli.label import add_label_commands
from p2pvision.cli.train import add_checkpoint_commands, add_train_command
from p2pvision.errors import P2PVisionError

__all__ = ["build_parser", "main"]


def cmd_info(args: argparse.Namespace) -> int:
    import numpy
    import timm
    import torch
    import torchvision
    from torchvision.extension import _has_ops

    from p2pvision import __version__
    from p2pvision.cache import cache_dir
    from p2pvision.models.backbones import WEIGHT_PACKAGES
    from p2pvision.regions.partition import fast_slic_available

    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    without_ops = "compiled ops not loaded: ops.nms and io decoders unusable; see README"
    packages = []
    for name, package in WEIGHT_PACKAGES.items():
        try:
            package.path()
            packages.append(name)
        except P2PVisionError:
            pass
    rows = [
        ("p2pvision", __version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torchvision", torchvision.__version__ + ("" if _has_ops() else f" ({without_ops})")),
        ("timm", timm.__version__),
        ("numpy", numpy.__version__),
        ("device", device),
        ("cpu threads", str(torch.get_num_threads())),
        ("cache", str(cache_dir())),
        ("offline weights", ", ".join(packages) or "none installed"),
        ("fast-slic", "installed" if fast_slic_available() else "not installed (scikit-image SLIC is used)"),
    ]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from p2pvision import __version__

    parser = Parser(prog="p2pvision", description=__doc__)
    parser.add_argument("--version", action="version", version=f"p2pvision {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="print versions, device and cache paths")
    info.set_defaults(run=cmd_info)

    add_data_command(commands)
    add_train_command(commands)
    add_explain_command(commands)
    add_benchmark_command(commands)
    add_inv_commands(commands)
    add_label_commands(commands)
    add_explore_command(commands)
    add_checkpoint_commands(commands)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what schedulers and ``docker stop`` send), raised where the program is, like Ctrl-C: temporary
    files are removed and the index of what was finished is written on the way out."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, except that ``KEY=VALUE`` overrides may also follow options
    (``train --config x --out y train.epochs=3``): argparse takes a positional list only once."""
    args, extra = parser.parse_known_args(argv)
    overrides = getattr(args, "overrides", None)
    if extra and isinstance(overrides, list) and all(_OVERRIDE.match(token) for token in extra):
        overrides.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``p2pvision`` console script. User errors print one line and exit with code 2; the exit
    codes are listed in :mod:`p2pvision.cli.inputs`."""
    try:
        args = parse_arguments(build_parser(), argv)
    except SystemExit as stop:  # --help, --version, or a wrong argument (one line, code 2)
        return stop.code if isinstance(stop.code, int) else EXIT_OK
    progress = logging.StreamHandler(sys.stdout)  # the library's progress lines (logger "p2pvision"), as printed
    progress.setFormatter(logging.Formatter("%(message)s"))
    library = logging.getLogger("p2pvision")
    library.addHandler(progress)
    if library.level == logging.NOTSET:
        library.setLevel(logging.INFO)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.run(args)
    except P2PVisionError as exc:
        print(f"p2pvision: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Terminated:
        print("p2pvision: terminated (SIGTERM); finished outputs are kept", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("p2pvision: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        library.removeHandler(progress)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
