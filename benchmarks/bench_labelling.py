"""Load test of the INV labelling app on loopback: concurrent labellers against ``p2pvision label serve``.

The cluster maps to label are real: ``p2pvision inv explain`` on the bundled photos (scikit-image astronaut,
chelsea, coffee, rocket; scikit-learn china) with the offline EfficientNet-Lite0, unless ``--runs`` names
existing folders. The app runs as its own process (``p2pvision label serve --port 0``) on a fresh database.
Each of ``--labellers`` threads keeps one connection and repeats ``--answers`` times what the page does: ask
for its next task, fetch a reveal image, submit an answer; ``--retry-share`` of the submissions are sent a
second time, as a browser retry would. Afterwards the database is read directly: every answer sent must be
stored exactly once, with the content sent, and every retry must have been answered "duplicate".

Prints a Markdown table (submission latency p50/p95/max, answers per second); ``--json PATH`` also writes the
numbers. Usage:
    python benchmarks/bench_labelling.py [--labellers 20] [--answers 50] [--runs DIR] [--json results/labelling.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image

from p2pvision.label.loadtest import run_load
from p2pvision.label.store import AnswerStore


def bundled_photo_files(folder: Path) -> list[Path]:
    """The bundled photos as PNG files (what a user would pass to the CLI)."""
    arrays = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    arrays["china"] = load_sample_image("china.jpg")
    paths = []
    for name, array in arrays.items():
        path = folder / f"{name}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    return paths


def explain_photos(folder: Path) -> Path:
    from p2pvision.cli import main

    photos = bundled_photo_files(folder)
    out = folder / "maps"
    with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, so that stdout stays the report
        code = main(["inv", "explain", *map(str, photos), "--out", str(out)])
    if code != 0:
        raise SystemExit("p2pvision inv explain failed")
    return out


def start_server(runs: Path, db: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "p2pvision.cli", "label", "serve", str(runs), "--db", str(db), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        print(line.rstrip(), file=sys.stderr)
        if line.startswith("labelling app: "):
            return process, line.split()[2]
    raise SystemExit(f"the server did not start: {process.communicate()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labellers", type=int, default=20, help="concurrent labellers (default: 20)")
    parser.add_argument("--answers", type=int, default=50, help="answers per labeller (default: 50)")
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of submissions sent twice (0.1)")
    parser.add_argument("--slow", type=int, default=200,
                        help="connections held open by slow clients during the run (default: 200)")  # fmt: skip
    parser.add_argument("--runs", type=Path, default=None, help="cluster-map folders (default: explain the photos)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        runs = args.runs or explain_photos(scratch)
        explain_seconds = time.perf_counter() - started
        db = scratch / "labels.sqlite"
        process, url = start_server(runs, db)
        try:
            report = run_load(url, args.labellers, args.answers, args.retry_share, slow=args.slow)
            with AnswerStore(db) as store:  # read beside the running server (WAL)
                stored = {answer.answer_id: answer for answer in store.answers()}
                rows = store.count()
                journal = store.journal_mode()
        finally:
            process.terminate()
            process.wait(timeout=30)
    expected = args.labellers * args.answers
    mismatched = [
        answer_id for answer_id, sent in report.sent.items()
        if answer_id not in stored or stored[answer_id].features != tuple(sent["features"])
        or stored[answer_id].guess != sent["guess"] or stored[answer_id].reveal_step != sent["reveal_step"]
    ]  # fmt: skip
    summary = report.summary()
    checks = {
        "answers expected": expected,
        "answers acknowledged (201)": len(report.sent),
        "rows in SQLite": rows,
        "lost (sent, not stored as sent)": len(mismatched),
        "duplicated (rows beyond answers sent)": rows - len(report.sent),
        "retries sent / answered duplicate": f"{report.retries} / {report.retries_flagged_duplicate}",
        "client errors": len(report.errors),
        "slow connections held open during the run": f"{report.slow_connections} of {args.slow}",
        "journal mode": journal,
    }
    latency = summary["latency_ms"]
    source = f"{runs} (given)" if args.runs else f"the bundled photos (explained in {explain_seconds:.1f} s)"
    print(
        f"{args.labellers} labellers x {args.answers} answers, {args.slow} slow connections, on {url} "
        f"({os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}); cluster maps of {source}\n"
    )
    print("| check | value |\n|---|---|")
    for key, value in checks.items():
        print(f"| {key} | {value} |")
    print("\n| submission latency p50 (ms) | p95 (ms) | max (ms) | answers/s | wall s |\n|---|---|---|---|---|")
    print(
        f"| {latency['p50']:.1f} | {latency['p95']:.1f} | {latency['max']:.1f} | "
        f"{summary['answers_per_second']:.0f} | {summary['seconds']:.1f} |"
    )
    for error in report.errors[:10]:
        print(f"error: {error}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"checks": checks, "load": summary}, indent=2) + "\n")
    ok = rows == len(report.sent) == expected and not mismatched and not report.errors
    ok = ok and report.retries == report.retries_flagged_duplicate
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
