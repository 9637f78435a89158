"""What p2pvision's local web apps (the labelling app, the explorer) share: a standard-library HTTP server with a
strict security posture, so that each app only adds its routes.

- Every response carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that allows only this origin's own
  files (no inline script, no CDN), ``nosniff``, no referrer, no framing.
- On a loopback address only loopback ``Host`` names are served (no DNS rebinding); a request with an ``Origin``
  must come from this server's own origin (:meth:`SafeHandler.same_origin`); :meth:`SafeHandler.from_another_site`
  tells requests that another site's page sent.
- Every connection has a read/write timeout (:data:`TIMEOUT`); at most :data:`MAX_CONNECTIONS` are served at once
  (more are answered 503 with Retry-After); bodies are read with a size limit and a media-type check
  (:meth:`SafeHandler.read_body`); any failure is answered with a JSON 4xx/5xx and logged in one line, never a
  traceback.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
from collections.abc import Collection
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast

TIMEOUT = 10.0  # seconds a connection may stay silent (idle keep-alive, slow headers or body)
MAX_CONNECTIONS = 256  # connections served at once
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SafeHandler(BaseHTTPRequestHandler):
    """A request handler whose failures are answered with JSON and logged in one line (prefixed ``log_name``)."""

    server_version = "p2pvision"
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT
    quiet = True
    log_name = "p2pvision"
    allowed_hosts: frozenset[str] | None = None  # set by bind() when listening on loopback

    def handle_one_request(self) -> None:
        """One request; whatever goes wrong is answered with JSON (when the connection still allows it) and
        logged in one line."""
        try:
            super().handle_one_request()  # a silent request line times out there: the connection is closed
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the server must answer and keep serving whatever happens
            self.fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def fail(self, status: HTTPStatus, message: str) -> None:
        """Log ``message`` in one line, answer it (5xx: without details) and close the connection."""
        sys.stderr.write(f"{self.log_name}: {self.command or '-'} {(self.path or '-')[:100]} -> {status.value}: "
                         f"{' '.join(message.splitlines())[:300]}\n")  # fmt: skip
        self.close_connection = True
        try:
            self.error(status, message if status < 500 else "internal error (logged on the server)")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # -- responses -----------------------------------------------------------------------------------------
    def send(self, status: HTTPStatus, body: bytes, content_type: str, cache: bool = False,
             headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        for key, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
        self.send(status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def error(self, status: HTTPStatus, message: str) -> None:
        self.json(status, {"error": message})

    # -- checks --------------------------------------------------------------------------------------------
    def host_allowed(self) -> bool:
        """On a loopback address only loopback host names are served: a page on another site that rebinds its
        own name to 127.0.0.1 (DNS rebinding) gets nothing."""
        if self.allowed_hosts is None:
            return True
        return (self.headers.get("Host") or "").lower() in self.allowed_hosts

    def same_origin(self) -> bool:
        """No Origin (not a browser's cross-site request) or exactly this server's origin, scheme included."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        return origin.lower() == f"http://{self.headers.get('Host') or ''}".lower()

    def from_another_site(self) -> bool:
        """The browser says that a page of another site sent this request (``Sec-Fetch-Site``), e.g. an image
        tag elsewhere that points here: such a page cannot read the answer, but it should not make the server work."""
        return (self.headers.get("Sec-Fetch-Site") or "").lower() in ("cross-site", "same-site")

    def read_body(self, media_types: Collection[str], max_bytes: int, what: str) -> bytes | None:
        """The request body when its media type is one of ``media_types`` and it has at most ``max_bytes``;
        otherwise None, with the error (415, 411, 413, 408, 400) answered. ``what`` names the body in messages."""
        media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media_type not in media_types:
            self.error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {what} as {' or '.join(sorted(media_types))}")
            return None
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self.close_connection = True
            self.error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return None
        if not 0 <= length <= max_bytes:
            self.close_connection = True
            self.error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{what} is at most {max_bytes} bytes, got {length}")
            return None
        try:
            body = self.rfile.read(length)
        except TimeoutError:  # a body shorter than its Content-Length
            self.fail(HTTPStatus.REQUEST_TIMEOUT, f"the body stopped for {self.timeout:g} s: request abandoned")
            return None
        if len(body) < length:
            self.close_connection = True
            self.error(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
            return None
        return body


class SafeServer(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once; errors are logged in one line."""

    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, log_name: str = "p2pvision",
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(max_connections)
        self.log_name = log_name

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
        sys.stderr.write(f"{self.log_name}: connection from {client_address[0]} failed: {type(exc).__name__}: {exc}\n")


Handler = TypeVar("Handler", bound=SafeHandler)


def bind(handler: type[Handler], attributes: dict[str, Any], host: str = "127.0.0.1", port: int = 0,
         max_connections: int = MAX_CONNECTIONS) -> SafeServer:  # fmt: skip
    """A server on ``host:port`` (port 0: a free one; see :func:`server_url`) whose requests are handled by a
    subclass of ``handler`` with ``attributes`` (its app, ``quiet``, ``timeout``...). On a loopback address the
    handler serves only loopback host names with the bound port."""
    bound_handler = cast(type[Handler], type(f"Bound{handler.__name__}", (handler,), dict(attributes)))
    server = SafeServer((host, port), bound_handler, max_connections=max_connections, log_name=handler.log_name)
    if is_loopback(host):
        bound = server.server_address[1]
        bound_handler.allowed_hosts = frozenset(f"{name}:{bound}" for name in ("127.0.0.1", "localhost", "[::1]", host))
    return server


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_url(server: ThreadingHTTPServer) -> str:
    """``http://host:port/`` of a listening server."""
    address, port = server.server_address[:2]
    host = cast(str, address)  # typeshed allows bytes; a TCP server's address comes from getsockname(), a str
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
