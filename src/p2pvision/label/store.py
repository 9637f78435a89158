"""Answers in SQLite: WAL journal, one connection behind a writer lock, idempotent inserts, CSV export/import.

The database file survives restarts: every answer is committed (``synchronous=FULL``) before the web app says
it is saved. Inserting an ``answer_id`` that is already stored with the same content is a no-op reported as a
duplicate (a retried submission); with other content it is a conflict. Tasks (one cluster map each) are stored
too, so that an export describes its answers without the cluster-map folders.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from p2pvision.cache import atomic_path
from p2pvision.errors import P2PVisionError, path_problem
from p2pvision.inv.answers import Answer, InvalidAnswer, validate_answer

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    answer_id TEXT PRIMARY KEY,
    labeller TEXT NOT NULL,
    task_id TEXT NOT NULL,
    reveal_step INTEGER NOT NULL,
    guess TEXT NOT NULL,
    features TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_task ON answers (task_id);
CREATE INDEX IF NOT EXISTS answers_by_labeller ON answers (labeller, task_id);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    layer TEXT NOT NULL,
    cluster INTEGER NOT NULL,
    target_name TEXT NOT NULL,
    choices TEXT NOT NULL,
    reveal_percents TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
CSV_COLUMNS = [
    "answer_id", "labeller", "task_id", "image", "layer", "cluster", "target_name", "reveal_step",
    "reveal_percent", "guess", "correct", "features", "created",
]  # fmt: skip


REQUIRED_COLUMNS = {"answer_id", "labeller", "task_id", "reveal_step", "guess", "features"}


class AnswerConflict(P2PVisionError, ValueError):
    """An answer_id that is already stored with other content."""


class AnswerStore:
    """The answers database at ``path`` (created if missing). Safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        problem = path_problem(self.path)
        if problem is not None and problem != "does not exist":  # a new database is created where none is
            raise P2PVisionError(f"answers database '{self.path}' {problem}: name another file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise P2PVisionError(f"cannot create the folder of answers database '{self.path}' "
                                 f"({exc.strerror or exc}): name another file") from None  # fmt: skip
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            stored = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise P2PVisionError(f"'{self.path}' is not a usable answers database ({exc}): name another file") from exc
        if stored is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(stored[0]) != SCHEMA_VERSION:
            raise P2PVisionError(
                f"'{self.path}' has answers schema version {stored[0]}; this p2pvision reads {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def journal_mode(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    # -- tasks ---------------------------------------------------------------------------------------------
    def register_tasks(self, tasks: Iterable[Mapping[str, Any]]) -> None:
        rows = [
            (t["task_id"], t["image"], t["layer"], t["cluster"], t["target_name"], json.dumps(t["choices"]),
             json.dumps(t["reveal_percents"]))
            for t in tasks
        ]  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def tasks(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM tasks").fetchall()
        return {
            row[0]: {
                "task_id": row[0], "image": row[1], "layer": row[2], "cluster": row[3], "target_name": row[4],
                "choices": json.loads(row[5]), "reveal_percents": json.loads(row[6]),
            }
            for row in rows
        }  # fmt: skip

    # -- answers -------------------------------------------------------------------------------------------
    def add(self, answer: Answer) -> bool:
        """Store ``answer``; True if new, False if this exact answer was stored before (a retry)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (answer.answer_id, answer.labeller, answer.task_id, answer.reveal_step, answer.guess,
                     json.dumps(list(answer.features)), answer.created or time.time()),
                )  # fmt: skip
                stored = cursor.rowcount == 1
                existing = None if stored else self._get(answer.answer_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if existing is not None and not existing.same_content(answer):
            raise AnswerConflict(f"answer_id {answer.answer_id} is already stored with other content")
        return stored

    def _get(self, answer_id: str) -> Answer | None:
        row = self._db.execute("SELECT * FROM answers WHERE answer_id = ?", (answer_id,)).fetchone()
        return None if row is None else _answer(row)

    def get(self, answer_id: str) -> Answer | None:
        with self._lock:
            return self._get(answer_id)

    def answers(self) -> list[Answer]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM answers ORDER BY created, answer_id").fetchall()
        return [_answer(row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def counts_by_task(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT task_id, COUNT(*) FROM answers GROUP BY task_id").fetchall())

    def tasks_answered_by(self, labeller: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT task_id FROM answers WHERE labeller = ?", (labeller,))
            return {row[0] for row in rows.fetchall()}

    def labellers(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(DISTINCT labeller) FROM answers").fetchone()[0]

    # -- CSV -----------------------------------------------------------------------------------------------
    def export_csv(self, path: str | os.PathLike[str]) -> int:
        """Write every answer with its task's description to a CSV file (atomically); returns the count."""
        tasks = self.tasks()
        answers = self.answers()
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, CSV_COLUMNS)
            writer.writeheader()
            for row in export_rows(answers, tasks):
                writer.writerow(row)
        return len(answers)

    def import_csv(self, path: str | os.PathLike[str]) -> tuple[int, int, list[str]]:
        """Add the answers of a CSV file written by :meth:`export_csv`. Returns (added, already stored,
        problems); each problem names the line and the rule, and such rows are skipped."""
        answers, problems = read_answers_csv(path, self.tasks())
        added, duplicates = 0, 0
        for line, answer in answers:
            try:
                if self.add(answer):
                    added += 1
                else:
                    duplicates += 1
            except AnswerConflict as exc:
                problems.append(f"{Path(path).name}:{line}: {exc}")
        return added, duplicates, problems


def read_answers_csv(
    path: str | os.PathLike[str], tasks: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[tuple[int, Answer]], list[str]]:
    """The valid answers of a CSV file written by ``export_csv`` with their line numbers, and a problem per
    invalid row (file:line: rule). Answers for tasks in ``tasks`` are also checked against the task."""
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise P2PVisionError(f"answers file '{path}' {problem}: name a CSV file written by 'p2pvision label export'")
    answers, problems = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        try:
            missing = REQUIRED_COLUMNS - set(reader.fieldnames or [])
            if missing:
                raise P2PVisionError(f"'{path}' lacks the column(s) {', '.join(sorted(missing))}: export it again")
            for row in reader:
                try:
                    task = (tasks or {}).get(row["task_id"] or "")
                    answers.append((reader.line_num, _answer_from_csv(row, task)))
                except (InvalidAnswer, ValueError) as exc:
                    problems.append(f"{path.name}:{reader.line_num}: {exc}")
        except UnicodeDecodeError:
            raise P2PVisionError(f"'{path}' is not UTF-8 text: export it again with 'p2pvision label export'") \
                from None
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: the file is not an export
            raise P2PVisionError(f"'{path}' line {reader.line_num + 1} is not a valid answers row ({exc}): export "
                                 "it again with 'p2pvision label export'") from None  # fmt: skip
    return answers, problems


def export_rows(answers: Iterable[Answer], tasks: Mapping[str, Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for answer in answers:
        task = tasks.get(answer.task_id, {})
        percents = task.get("reveal_percents") or []
        target = task.get("target_name", "")
        yield {
            **answer.to_dict(),
            "features": json.dumps(list(answer.features), ensure_ascii=False),
            "image": task.get("image", ""),
            "layer": task.get("layer", ""),
            "cluster": task.get("cluster", ""),
            "target_name": target,
            "reveal_percent": percents[answer.reveal_step] if answer.reveal_step < len(percents) else "",
            "correct": "" if not task else int(answer.guess == target),
            "created": f"{answer.created:.6f}",
        }


def _answer(row: tuple) -> Answer:
    return Answer(row[0], row[1], row[2], int(row[3]), row[4], tuple(json.loads(row[5])), float(row[6]))


def _answer_from_csv(row: Mapping[str, str], task: Mapping[str, Any] | None) -> Answer:
    try:
        features = json.loads(row["features"])
    except (TypeError, json.JSONDecodeError):
        raise InvalidAnswer("features must be a JSON list of texts") from None
    step = row["reveal_step"]
    payload = {**row, "features": features, "reveal_step": int(step) if step and step.isdigit() else step}
    text = (row.get("created") or "").strip()
    try:
        created = float(text) if text else time.time()
    except ValueError:
        raise InvalidAnswer(f"created must be a timestamp (seconds since 1970), got {text[:40]!r}") from None
    if not (math.isfinite(created) and created >= 0):
        raise InvalidAnswer(f"created must be a finite, non-negative timestamp, got {text[:40]!r}")
    return validate_answer(payload, task, created=created)
