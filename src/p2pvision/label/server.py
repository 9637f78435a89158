"""The labelling web app: a local HTTP server (standard library) over the tasks and the answers database.

Pages and API (JSON):

- ``GET /``: the page; ``GET /static/app.js`` and ``/static/style.css``: its script and style (no CDN, no
  inline script: the Content-Security-Policy allows only this origin's files);
- ``GET /api/task?labeller=NAME``: the next task for NAME (the task with fewest answers that NAME has not
  answered yet; ``{"done": true}`` when none is left): its id, reveal-image URLs with their percentages, and
  the class choices;
- ``GET /api/reveal/<task>/<step>.png``: a partial-reveal image;
- ``POST /api/answers``: store an answer (``application/json``; see :mod:`p2pvision.inv.answers`). 201 when
  stored, 200 with ``"duplicate": true`` when this answer_id was stored before, 400 with ``"error"`` when
  invalid, 409 on an answer_id reused with other content;
- ``GET /api/stats``: answers, labellers, tasks.

Several people can label at once (one thread per connection, one SQLite connection behind a lock). Requests
from another origin are refused, so a web page elsewhere cannot submit answers through a labeller's browser.

Robustness (the shared server of :mod:`p2pvision.webserver`): every connection has a read/write timeout (so an
idle or slow client, or a body shorter than its Content-Length, cannot hold a handler forever); at most
:data:`MAX_CONNECTIONS` connections are served at once (more are answered 503 with Retry-After and closed); bodies
are at most :data:`MAX_BODY` bytes of ``application/json``; any failure is answered with a JSON 4xx/5xx and logged
in one line, never a traceback.
"""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from p2pvision.inv.answers import (
    MAX_FEATURE,
    MAX_FEATURES,
    MAX_NAME,
    UNSURE,
    InvalidAnswer,
    clean_text,
    validate_answer,
)
from p2pvision.label.store import AnswerConflict, AnswerStore
from p2pvision.webserver import TIMEOUT, SafeHandler, SafeServer, bind, server_url

__all__ = ["MAX_BODY", "MAX_CONNECTIONS", "LabelApp", "LabelHandler", "make_server", "server_url"]

MAX_BODY = 16 * 1024
MAX_CONNECTIONS = 256  # connections served at once: 20 labellers and hundreds of idle ones fit
STATIC = {
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}


class LabelApp:
    """What the handlers share: the tasks (by id, in a fixed order), the store and cached static files."""

    def __init__(self, tasks: dict[str, dict[str, Any]], store: AnswerStore, title: str = "Label cluster maps"):
        self.tasks = tasks
        self.order = list(tasks)
        self.store = store
        self.title = title
        store.register_tasks(tasks.values())
        self._static = {name: (resources.files("p2pvision.label") / "static" / name).read_bytes()
                        for name in ("index.html", "app.js", "style.css")}  # fmt: skip
        self._images: dict[Path, bytes] = {}
        self._images_lock = threading.Lock()

    def static(self, name: str) -> bytes:
        return self._static[name]

    def image(self, path: Path) -> bytes:
        with self._images_lock:
            if path not in self._images:
                self._images[path] = path.read_bytes()
            return self._images[path]

    def next_task(self, labeller: str) -> dict[str, Any]:
        done = self.store.tasks_answered_by(labeller)
        counts = self.store.counts_by_task()
        open_tasks = [task_id for task_id in self.order if task_id not in done]
        if not open_tasks:
            return {"done": True, "answered": len(done), "tasks": len(self.order)}
        task_id = min(open_tasks, key=lambda t: counts.get(t, 0))  # min is stable: ties go to the earlier task
        task = self.tasks[task_id]
        return {
            "done": False,
            "task_id": task_id,
            "steps": [
                {"percent": percent, "url": f"/api/reveal/{task_id}/{step}.png"}
                for step, percent in enumerate(task["reveal_percents"])
            ],
            "choices": task["choices"],
            "unsure": UNSURE,
            "answered": len(done),
            "tasks": len(self.order),
            "limits": {"name": MAX_NAME, "feature": MAX_FEATURE, "features": MAX_FEATURES},
        }

    def submit(self, payload: Any) -> tuple[HTTPStatus, dict[str, Any]]:
        task_id = payload.get("task_id") if isinstance(payload, dict) else None
        task = self.tasks.get(task_id) if isinstance(task_id, str) else None
        if task is None:
            return HTTPStatus.BAD_REQUEST, {"error": "unknown task_id: ask /api/task for a task"}
        try:
            answer = validate_answer(payload, task, created=time.time())
            stored = self.store.add(answer)
        except InvalidAnswer as exc:
            return HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except AnswerConflict as exc:
            return HTTPStatus.CONFLICT, {"error": str(exc)}
        status = HTTPStatus.CREATED if stored else HTTPStatus.OK
        return status, {"stored": True, "duplicate": not stored, "answer_id": answer.answer_id}

    def stats(self) -> dict[str, Any]:
        return {"answers": self.store.count(), "labellers": self.store.labellers(), "tasks": len(self.order)}


class LabelHandler(SafeHandler):
    server_version = "p2pvision-label"
    log_name = "p2pvision label"
    app: LabelApp

    # -- routes --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self.host_allowed():
            self.error(HTTPStatus.FORBIDDEN, "unknown Host: open the app at the address it printed")
            return
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            self.send(HTTPStatus.OK, self.app.static("index.html"), "text/html; charset=utf-8")
        elif path in STATIC:
            name, content_type = STATIC[path]
            self.send(HTTPStatus.OK, self.app.static(name), content_type)
        elif path == "/api/task":
            names = parse_qs(url.query).get("labeller", [])
            try:
                labeller = clean_text("labeller", names[0] if names else "", MAX_NAME)
            except InvalidAnswer as exc:
                self.error(HTTPStatus.BAD_REQUEST, str(exc))
                return
            self.json(HTTPStatus.OK, self.app.next_task(labeller))
        elif path.startswith("/api/reveal/"):
            self._reveal(path.removeprefix("/api/reveal/"))
        elif path == "/api/stats":
            self.json(HTTPStatus.OK, self.app.stats())
        elif path == "/favicon.ico":
            self.send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache=True)
        else:
            self.error(HTTPStatus.NOT_FOUND, f"no page at {url.path[:100]}")

    do_HEAD = do_GET

    def _reveal(self, rest: str) -> None:
        task_id, _, file_name = rest.partition("/")
        task = self.app.tasks.get(task_id)
        step = file_name.removesuffix(".png")
        if task is None or not file_name.endswith(".png") or not step.isdigit() or int(step) >= len(task["reveal"]):
            self.error(HTTPStatus.NOT_FOUND, "no such reveal image")
            return
        self.send(HTTPStatus.OK, self.app.image(Path(task["reveal"][int(step)])), "image/png", cache=True)

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/api/answers":
            self.error(HTTPStatus.NOT_FOUND, "POST answers to /api/answers")
            return
        if not (self.host_allowed() and self.same_origin()):
            self.error(HTTPStatus.FORBIDDEN, "answers are accepted from this app's own page only")
            return
        body = self.read_body({"application/json"}, MAX_BODY, "an answer")
        if body is None:
            return
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # invalid JSON, huge integers, deep nesting
            self.error(HTTPStatus.BAD_REQUEST, "the body is not a valid UTF-8 JSON answer")
            return
        status, data = self.app.submit(payload)
        self.json(status, data)


def make_server(
    app: LabelApp, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> SafeServer:  # fmt: skip
    """A server bound to ``host:port`` (port 0: a free port; read it from ``server.server_address``), with a
    per-connection ``timeout`` in seconds and at most ``max_connections`` connections served at once."""
    attributes = {"app": app, "quiet": quiet, "timeout": timeout}
    return bind(LabelHandler, attributes, host, port, max_connections=max_connections)
