"""``p2pvision explore CHECKPOINT [IMAGES...]``: a local web page to explore a P2P model interactively.

Wired into the main parser with ``add_explore_command(subparsers)``; nothing heavy is imported to build it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from p2pvision.cli.arguments import port, positive_int
from p2pvision.cli.explain import DECLARED_EXPLAINERS, choose_device, method_names
from p2pvision.cli.inputs import check_checkpoint_exists
from p2pvision.errors import ConfigError

DEFAULT_PORT = 8770


def add_explore_command(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explore``."""
    parser = subparsers.add_parser(
        "explore",
        help="explore a P2P model in the browser: kept regions under tau and delta sliders (127.0.0.1 by default)",
        description="Serve a local web page where you pick one of IMAGES or drop an image file and see the P2P "
        "model's prediction and probability, the kept regions under a tau and a delta slider (only the head and "
        "the classifier re-run), the certainty-vs-tau curve, the region embeddings and post-hoc explainers' maps "
        "on the same classifier with their cost; with downloads of the figure (PNG) and the explanation "
        "(.safetensors). Stop it with Ctrl-C.",
    )
    parser.add_argument("checkpoint", help="P2P checkpoint folder (config.json + model.safetensors)")
    parser.add_argument(
        "images", nargs="*",
        help="image files or folders (a folder's images and those of its subfolders, e.g. an image-folder data set "
        "with one folder per class); none: drop files on the page",
    )  # fmt: skip
    parser.add_argument("--limit", type=positive_int, default=500, help="at most this many images listed (500)")
    parser.add_argument(
        "--method", type=method_names, default=None,
        help="post-hoc explainers shown beside P2P, comma-separated (default: grad_cam,rise; small budgets)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    parser.set_defaults(run=run_explore)


def run_explore(args: argparse.Namespace) -> int:
    check_checkpoint_exists(args.checkpoint)
    missing = [name for name in args.images if not Path(name).exists() and not Path(name).is_symlink()]
    if missing:
        raise ConfigError(f"image '{missing[0]}' does not exist: name image files or folders of images")
    if DECLARED_EXPLAINERS.complete:  # method names, from the registry's source: before torch loads
        for name in args.method or ():
            DECLARED_EXPLAINERS.resolve(name)

    from p2pvision.explain import EXPLAINERS
    from p2pvision.explore.server import make_server
    from p2pvision.explore.session import DEFAULT_METHODS, Explorer, image_inputs
    from p2pvision.models.p2p.checkpoint import load_p2p
    from p2pvision.webserver import is_loopback, server_url

    methods = tuple(EXPLAINERS.resolve(name) for name in (args.method or DEFAULT_METHODS))
    model = load_p2p(args.checkpoint, device=choose_device(args.device))
    paths, names = image_inputs(args.images, args.limit)
    title = "/".join(Path(args.checkpoint).resolve().parts[-2:])  # e.g. run/model
    explorer = Explorer(model, paths, methods, title=title, names=names)
    try:
        server = make_server(explorer, args.host, args.port, quiet=not args.verbose)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port") from exc
    try:
        print(f"{len(paths)} images listed; {len(model.class_names)} classes; post-hoc: {', '.join(methods)}")
        if not is_loopback(args.host):
            print(f"warning: listening on {args.host}: anyone who can reach this address can use the model")
        print(f"explorer: {server_url(server)} (Ctrl-C stops it)", flush=True)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (p2pvision's main raises it as an interrupt)
        pass
    finally:
        server.server_close()
    print("stopped; nothing was written")
    return 0
