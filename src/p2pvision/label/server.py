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

Robustness: every connection has a read/write timeout (:data:`TIMEOUT`, so an idle or slow client, or a body
shorter than its Content-Length, cannot hold a handler forever); at most :data:`MAX_CONNECTIONS` connections are
served at once (more are answered 503 with Retry-After and closed); bodies are at most :data:`MAX_BODY` bytes of
``application/json``; any failure is answered with a JSON 4xx/5xx and logged in one line, never a traceback.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, cast
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

MAX_BODY = 16 * 1024
TIMEOUT = 10.0  # seconds a connection may stay silent (idle keep-alive, slow headers or body)
MAX_CONNECTIONS = 256  # connections served at once: 20 labellers and hundreds of idle ones fit
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
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
        self.allowed_hosts: set[str] | None = None  # set by make_server when listening on loopback
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


class LabelHandler(BaseHTTPRequestHandler):
    server_version = "p2pvision-label"
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT
    app: LabelApp
    quiet = True

    def handle_one_request(self) -> None:
        """One request; whatever goes wrong is answered with JSON (when the connection still allows it) and
        logged in one line."""
        try:
            super().handle_one_request()  # a silent request line times out there: the connection is closed
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the server must answer and keep serving whatever happens
            self._fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _fail(self, status: HTTPStatus, message: str) -> None:
        sys.stderr.write(f"p2pvision label: {self.command or '-'} {(self.path or '-')[:100]} -> {status.value}: "
                         f"{message}\n")  # fmt: skip
        self.close_connection = True
        try:
            self._error(status, message if status < 500 else "internal error (logged on the server)")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # -- responses -----------------------------------------------------------------------------------------
    def _send(self, status: HTTPStatus, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _host_allowed(self) -> bool:
        """On a loopback address only loopback host names are served: a page on another site that rebinds its
        own name to 127.0.0.1 (DNS rebinding) gets nothing."""
        allowed = self.app.allowed_hosts
        if allowed is None:
            return True
        return (self.headers.get("Host") or "").lower() in allowed

    def _same_origin(self) -> bool:
        """No Origin (not a browser's cross-site request) or exactly this server's origin, scheme included."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        return origin.lower() == f"http://{self.headers.get('Host') or ''}".lower()

    # -- routes --------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "unknown Host: open the app at the address it printed")
            return
        url = urlsplit(self.path)
        path = url.path
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, self.app.static("index.html"), "text/html; charset=utf-8")
        elif path in STATIC:
            name, content_type = STATIC[path]
            self._send(HTTPStatus.OK, self.app.static(name), content_type)
        elif path == "/api/task":
            names = parse_qs(url.query).get("labeller", [])
            try:
                labeller = clean_text("labeller", names[0] if names else "", MAX_NAME)
            except InvalidAnswer as exc:
                self._error(HTTPStatus.BAD_REQUEST, str(exc))
                return
            self._json(HTTPStatus.OK, self.app.next_task(labeller))
        elif path.startswith("/api/reveal/"):
            self._reveal(path.removeprefix("/api/reveal/"))
        elif path == "/api/stats":
            self._json(HTTPStatus.OK, self.app.stats())
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache=True)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no page at {url.path[:100]}")

    do_HEAD = do_GET

    def _reveal(self, rest: str) -> None:
        task_id, _, file_name = rest.partition("/")
        task = self.app.tasks.get(task_id)
        step = file_name.removesuffix(".png")
        if task is None or not file_name.endswith(".png") or not step.isdigit() or int(step) >= len(task["reveal"]):
            self._error(HTTPStatus.NOT_FOUND, "no such reveal image")
            return
        self._send(HTTPStatus.OK, self.app.image(Path(task["reveal"][int(step)])), "image/png", cache=True)

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/api/answers":
            self._error(HTTPStatus.NOT_FOUND, "POST answers to /api/answers")
            return
        if not (self._host_allowed() and self._same_origin()):
            self._error(HTTPStatus.FORBIDDEN, "answers are accepted from this app's own page only")
            return
        media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send answers as application/json")
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"an answer is at most {MAX_BODY} bytes")
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:  # a body shorter than its Content-Length
            self._fail(HTTPStatus.REQUEST_TIMEOUT, f"the body stopped for {self.timeout:g} s: request abandoned")
            return
        if len(body) < length:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
            return
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # invalid JSON, huge integers, deep nesting
            self._error(HTTPStatus.BAD_REQUEST, "the body is not a valid UTF-8 JSON answer")
            return
        status, data = self.app.submit(payload)
        self._json(status, data)


class LabelServer(ThreadingHTTPServer):
    """One thread per connection, at most :data:`MAX_CONNECTIONS` at once; errors are logged in one line."""

    daemon_threads = True
    request_queue_size = 128  # many labellers connecting at once

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": "the server is busy: retry in a second"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
        try:
            request.settimeout(1.0)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        sys.stderr.write(f"p2pvision label: connection from {client_address[0]} failed: {type(exc).__name__}: {exc}\n")


def make_server(
    app: LabelApp, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> LabelServer:  # fmt: skip
    """A server bound to ``host:port`` (port 0: a free port; read it from ``server.server_address``), with a
    per-connection ``timeout`` in seconds and at most ``max_connections`` connections served at once."""
    handler = type("BoundLabelHandler", (LabelHandler,), {"app": app, "quiet": quiet, "timeout": timeout})
    server = LabelServer((host, port), handler, max_connections=max_connections)
    bound = server.server_address[1]
    if host in ("localhost", "::1") or host.startswith("127."):
        app.allowed_hosts = {f"{name}:{bound}" for name in ("127.0.0.1", "localhost", "[::1]", host)}
    return server


def server_url(server: LabelServer) -> str:
    address, port = server.server_address[:2]
    host = cast(str, address)  # typeshed allows bytes; a TCP server's address comes from getsockname(), a str
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
