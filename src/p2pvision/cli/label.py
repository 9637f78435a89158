"""``p2pvision label serve | export | import``: the labelling web app and its answers database.

Wired into the main parser with ``add_label_commands(subparsers)``; nothing heavy is imported to build it.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import threading
from pathlib import Path

from p2pvision.cli.arguments import output_file, port

DEFAULT_DB = "results/inv/labels.sqlite"


def add_label_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``label`` with its actions ``serve``, ``export`` and ``import``."""
    label = subparsers.add_parser("label", help="the labelling web app for INV cluster maps and its answers")
    actions = label.add_subparsers(dest="label_command", required=True, metavar="ACTION")

    serve = actions.add_parser(
        "serve",
        help="serve the labelling web app (127.0.0.1 by default)",
        description="Serve a local web app that shows each kept cluster map of the given folders revealed step by "
        "step and stores people's class guesses and features in --db (SQLite). Stop it with Ctrl-C.",
    )
    serve.add_argument("runs", nargs="+", help="cluster-map folders from 'p2pvision inv explain' (or their parents)")
    serve.add_argument("--db", default=DEFAULT_DB, help=f"answers database (default: {DEFAULT_DB})")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=port, default=8765, help="port (default: 8765; 0 picks a free one)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(run=run_serve)

    export = actions.add_parser("export", help="write all answers to a CSV file")
    export.add_argument("--db", default=DEFAULT_DB, help=f"answers database (default: {DEFAULT_DB})")
    export.add_argument("--out", required=True, type=output_file, help="CSV file to write")
    export.set_defaults(run=run_export)

    imported = actions.add_parser("import", help="add the answers of a CSV file (exported before) to a database")
    imported.add_argument("csv", help="CSV file written by 'p2pvision label export'")
    imported.add_argument("--db", default=DEFAULT_DB, help=f"answers database (default: {DEFAULT_DB})")
    imported.set_defaults(run=run_import)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_serve(args: argparse.Namespace) -> int:
    from p2pvision.errors import ConfigError
    from p2pvision.label.server import LabelApp, make_server, server_url
    from p2pvision.label.store import AnswerStore
    from p2pvision.label.tasks import load_tasks

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must lie in 0..65535, got {args.port}")
    tasks = load_tasks(args.runs)
    store = AnswerStore(args.db)
    try:
        app = LabelApp(tasks, store)
        try:
            server = make_server(app, args.host, args.port, quiet=not args.verbose)
        except OSError as exc:
            message = f"cannot listen on {args.host}:{args.port} ({exc.strerror}): choose another --port"
            raise ConfigError(message) from exc
        try:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it like Ctrl-C
            print(f"{len(tasks)} cluster maps to label; {store.count()} answers so far in {Path(args.db).resolve()}")
            if not _is_loopback(args.host):
                print(f"warning: listening on {args.host}: anyone who can reach this address can submit answers")
            print(f"labelling app: {server_url(server)} (Ctrl-C stops it)", flush=True)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        print(f"stopped; {store.count()} answers in {Path(args.db).resolve()}")
    finally:
        store.close()
    return 0


def _existing_store(path: str):
    from p2pvision.errors import ConfigError
    from p2pvision.label.store import AnswerStore

    if not Path(path).is_file():
        raise ConfigError(f"answers database '{path}' does not exist: pass --db (written by 'p2pvision label serve')")
    return AnswerStore(path)


def run_export(args: argparse.Namespace) -> int:
    with _existing_store(args.db) as store:
        count = store.export_csv(args.out)
    print(f"exported {count} answers to {Path(args.out).resolve()}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from p2pvision.label.store import AnswerStore

    with AnswerStore(args.db) as store:
        added, duplicates, problems = store.import_csv(args.csv)
        total = store.count()
    for problem in problems[:20]:
        print(f"skipped {problem}")
    if len(problems) > 20:
        print(f"... and {len(problems) - 20} more skipped rows")
    print(f"imported {added} new answers ({duplicates} already stored, {len(problems)} skipped); {total} in {args.db}")
    return 0 if not problems else 1
