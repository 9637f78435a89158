"""``p2pvision label serve | export | import``: the labelling web app and its answers database.

Wired into the main parser with ``add_label_commands(subparsers)``; nothing heavy is imported to build it.
"""

from __future__ import annotations

import argparse
import signal
import sys
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_serve(args: argparse.Namespace) -> int:
    from p2pvision.errors import ConfigError
    from p2pvision.label.server import LabelApp, make_server, server_url
    from p2pvision.label.store import AnswerStore
    from p2pvision.label.tasks import load_tasks
    from p2pvision.webserver import is_loopback

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must lie in 0..65535, got {args.port}")
    tasks = load_tasks(args.runs)
    db = Path(args.db)
    created, serving = not db.exists() and not db.is_symlink(), False
    store = AnswerStore(db)
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
            if not is_loopback(args.host):
                print(f"warning: listening on {args.host}: anyone who can reach this address can submit answers")
            print(f"labelling app: {server_url(server)} (Ctrl-C stops it)", flush=True)
            serving = True
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        print(f"stopped; {store.count()} answers in {Path(args.db).resolve()}")
    finally:
        store.close()
        if created and not serving:  # it never served: the database made for it goes again
            _remove_database(db)
    return 0


def _existing_store(path: str):
    from p2pvision.errors import ConfigError, path_problem
    from p2pvision.label.store import AnswerStore

    problem = path_problem(path)
    if problem is not None:
        raise ConfigError(f"answers database '{path}' {problem}: pass --db (written by 'p2pvision label serve')")
    return AnswerStore(path)


def run_export(args: argparse.Namespace) -> int:
    with _existing_store(args.db) as store:
        count = store.export_csv(args.out)
    print(f"exported {count} answers to {Path(args.out).resolve()}")
    return 0


def _remove_database(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        name.unlink(missing_ok=True)


def run_import(args: argparse.Namespace) -> int:
    """Exit code 0: every row imported (or already stored); 1: some rows failed, one line each; 2: the file cannot
    be used or every row failed (a database created for it is removed again)."""
    from p2pvision.cli.inputs import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED
    from p2pvision.errors import P2PVisionError
    from p2pvision.label.store import AnswerStore

    db = Path(args.db)
    created = not db.exists() and not db.is_symlink()
    try:
        with AnswerStore(db) as store:
            added, duplicates, problems = store.import_csv(args.csv)
            total = store.count()
    except P2PVisionError:
        if created:
            _remove_database(db)
        raise
    for problem in problems[:20]:
        print(f"p2pvision: error: {problem}", file=sys.stderr)
    if len(problems) > 20:
        print(f"p2pvision: ... and {len(problems) - 20} more rows failed", file=sys.stderr)
    if not problems:
        code = EXIT_OK
    elif added or duplicates:
        code = EXIT_SOME_FAILED
        print(f"p2pvision: {len(problems)} rows failed; the others are stored", file=sys.stderr)
    else:  # nothing stored
        if created:
            _remove_database(db)
        return EXIT_ERROR
    print(f"imported {added} new answers ({duplicates} already stored, {len(problems)} skipped); {total} in {args.db}")
    return code
