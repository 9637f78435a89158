"""The explorer's web app: a local HTTP server (standard library) over an :class:`~p2pvision.explore.session.Explorer`.

Why this stack: the labelling app's server (:mod:`p2pvision.webserver`: ``ThreadingHTTPServer`` with a strict
Content-Security-Policy, host and origin checks, body limits, timeouts and one-line logs) and one small static page
with plain JavaScript. It adds no dependency (Gradio would add about 100 MB and its own server, front end and
security settings to keep up with), it works offline, and the project's maintainers already keep and test this
server; the page only needs sliders, images and two small SVG plots.

Pages and API:

- ``GET /``, ``/static/app.js``, ``/static/style.css``: the page (no inline script, no CDN);
- ``GET /api/info``: the model's classes, tau grid, default delta, post-hoc methods and the images (id, name);
- ``POST /api/images?name=NAME``: add an image file (the raw bytes, ``application/octet-stream`` or ``image/*``,
  at most :data:`MAX_UPLOAD` bytes): 201 with its id and name, 400 with a one-line message naming the file when it
  is not a usable image;
- ``GET /api/images/<id>.png``: the image as the model sees it (resized and centre-cropped);
- ``GET /api/view/<id>?tau=T`` or ``?delta=D``: the prediction at tau ``T``, or at the tau the model's search
  picks at certainty ``D`` (head + classifier only: features and the curve are cached), the kept regions and
  share, the regions' embedding, the certainty-vs-tau curve and the URL of the rendered mask
  (``GET /api/overlay/<id>/<n>.png``);
- ``GET /api/posthoc/<id>``: the post-hoc explainers' maps (``GET /api/posthoc/<id>/<method>.png``) with their
  cost;
- ``GET /api/figure/<id>.png`` and ``GET /api/explanation/<id>.safetensors``, with ``?tau=T`` or ``?delta=D``:
  downloads of the P2P figure and the :class:`~p2pvision.explanation.Explanation` file.

Uploads are accepted from this app's own page only (same origin, loopback host names on a loopback address), and
the API does no work for requests that the browser says another site's page sent (``Sec-Fetch-Site``).
"""

from __future__ import annotations

import math
import re
from http import HTTPStatus
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from p2pvision.errors import P2PVisionError
from p2pvision.explore.session import Explorer, UnknownImage, download_stem
from p2pvision.webserver import MAX_CONNECTIONS, TIMEOUT, SafeHandler, SafeServer, bind

__all__ = ["MAX_UPLOAD", "ExploreHandler", "make_server"]

MAX_UPLOAD = 20 * 1024 * 1024
UPLOAD_TYPES = frozenset({"application/octet-stream", "image/png", "image/jpeg", "image/gif", "image/webp",
                          "image/bmp", "image/tiff"})  # fmt: skip
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
_ID = r"(\d{1,9})"
ROUTES = {
    "image": re.compile(rf"/api/images/{_ID}\.png"),
    "view": re.compile(rf"/api/view/{_ID}"),
    "overlay": re.compile(rf"/api/overlay/{_ID}/(\d{{1,9}})\.png"),
    "posthoc": re.compile(rf"/api/posthoc/{_ID}"),
    "posthoc_map": re.compile(rf"/api/posthoc/{_ID}/([a-z_]{{1,40}})\.png"),
    "figure": re.compile(rf"/api/figure/{_ID}\.png"),
    "explanation": re.compile(rf"/api/explanation/{_ID}\.safetensors"),
}


class BadQuery(ValueError):
    """A query value that cannot be used (answered 400 with its message)."""


def _fraction(query: dict[str, list[str]], key: str, low_open: bool = False) -> float | None:
    """``key`` of the query as a number in [0, 1] (``(0, 1)`` with ``low_open``), None when absent."""
    values = query.get(key)
    if not values:
        return None
    try:
        value = float(values[0])
    except ValueError:
        raise BadQuery(f"{key} must be a number, got {values[0][:20]!r}") from None
    if not math.isfinite(value) or not 0 <= value <= 1 or (low_open and not 0 < value < 1):
        raise BadQuery(f"{key} must lie in {'(0, 1)' if low_open else '[0, 1]'}, got {values[0][:20]}")
    return value


class ExploreHandler(SafeHandler):
    server_version = "p2pvision-explore"
    log_name = "p2pvision explore"
    explorer: Explorer
    static_files: dict[str, bytes]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self.host_allowed():
            self.error(HTTPStatus.FORBIDDEN, "unknown Host: open the explorer at the address it printed")
            return
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/api/") and self.from_another_site():  # the model's work is for this app's page
            self.error(HTTPStatus.FORBIDDEN, "the explorer answers its own page only")
            return
        if path in STATIC:
            name, content_type = STATIC[path]
            self.send(HTTPStatus.OK, self.static_files[name], content_type)
            return
        if path == "/api/info":
            self.json(HTTPStatus.OK, self.explorer.info())
            return
        if path == "/favicon.ico":
            self.send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache=True)
            return
        for route, pattern in ROUTES.items():
            match = pattern.fullmatch(path)
            if match:
                try:
                    self._route(route, *match.groups(), query=query)
                except BadQuery as exc:
                    self.error(HTTPStatus.BAD_REQUEST, str(exc))
                except UnknownImage as exc:
                    self.error(HTTPStatus.NOT_FOUND, str(exc))
                except P2PVisionError as exc:  # an image file that cannot be loaded, named in one line
                    self.error(HTTPStatus.UNPROCESSABLE_ENTITY, " ".join(str(exc).splitlines()))
                return
        self.error(HTTPStatus.NOT_FOUND, f"no page at {path[:100]}")

    do_HEAD = do_GET

    def _route(self, route: str, image_id: str, *rest: str, query: dict[str, list[str]]) -> None:
        explorer = self.explorer
        if route == "image":
            self.send(HTTPStatus.OK, explorer.image_png(image_id), "image/png")
        elif route == "view":
            tau, delta = _fraction(query, "tau"), _fraction(query, "delta", low_open=True)
            if delta is not None and tau is None:
                tau = explorer.tau_for_delta(image_id, delta)
            elif tau is None or delta is not None:
                raise BadQuery("give either ?tau=T (T in [0, 1]) or ?delta=D (D in (0, 1))")
            self.json(HTTPStatus.OK, explorer.view(image_id, tau))
        elif route in ("overlay", "posthoc_map"):
            picture = explorer.overlay(image_id, int(rest[0])) if route == "overlay" else \
                explorer.posthoc_map(image_id, rest[0])  # fmt: skip
            if picture is None:
                self.error(HTTPStatus.NOT_FOUND, "no such picture (it was replaced: ask /api/view again)")
            else:
                self.send(HTTPStatus.OK, picture, "image/png", cache=True)
        elif route == "posthoc":
            self.json(HTTPStatus.OK, {"id": image_id, "methods": explorer.posthoc(image_id)})
        else:
            tau, delta = _fraction(query, "tau"), _fraction(query, "delta", low_open=True)
            if tau is not None and delta is not None:
                raise BadQuery("give either tau or delta, not both")
            stem = f"{download_stem(explorer.entry(image_id).name)}.p2p"
            if route == "figure":
                body, name, kind = explorer.figure_png(image_id, tau, delta), f"{stem}.png", "image/png"
            else:
                body, name, kind = explorer.explanation_file(image_id, tau, delta), f"{stem}.safetensors", \
                    "application/octet-stream"  # fmt: skip
            self.send(HTTPStatus.OK, body, kind, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/api/images":
            self.error(HTTPStatus.NOT_FOUND, "POST image files to /api/images?name=NAME")
            return
        if not (self.host_allowed() and self.same_origin()):
            self.error(HTTPStatus.FORBIDDEN, "images are accepted from this app's own page only")
            return
        body = self.read_body(UPLOAD_TYPES, MAX_UPLOAD, "an image file")
        if body is None:
            return
        name = (parse_qs(url.query).get("name") or ["upload"])[0]
        try:
            image_id = self.explorer.add_upload(body, name)
        except P2PVisionError as exc:
            self.error(HTTPStatus.BAD_REQUEST, " ".join(str(exc).splitlines()))
            return
        self.json(HTTPStatus.CREATED, {"id": image_id, "name": self.explorer.entries[image_id].name})


def make_server(
    explorer: Explorer, host: str = "127.0.0.1", port: int = 0, quiet: bool = True, timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> SafeServer:  # fmt: skip
    """A server for ``explorer`` bound to ``host:port`` (port 0: a free port; see
    :func:`p2pvision.webserver.server_url`)."""
    folder = resources.files("p2pvision.explore") / "static"
    files = {name: (folder / name).read_bytes() for name in ("index.html", "app.js", "style.css")}
    attributes: dict[str, Any] = {"explorer": explorer, "static_files": files, "quiet": quiet, "timeout": timeout}
    return bind(ExploreHandler, attributes, host, port, max_connections=max_connections)
