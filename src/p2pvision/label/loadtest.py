"""A load test of a running labelling app: simulated labellers, each on its own connection and thread, doing
what the page does (ask for a task, fetch a reveal image, submit an answer), some submissions sent twice as
a retry would. Used by ``benchmarks/bench_labelling.py`` and the tests; only ever point it at your own server
(loopback)."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

FEATURES = ["fur", "eye", "ear", "whiskers", "stripes", "cup", "saucer", "foam", "handle", "wheel", "sky",
            "smoke", "face", "helmet", "flag", "metal", "grass", "edge", "texture", "nose"]  # fmt: skip


@dataclass
class LoadReport:
    """What the simulated labellers sent and how long the server took."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # answer_id -> answer, as first sent
    latencies: list[float] = field(default_factory=list)  # seconds per answer submission (first sends)
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> count over all submissions
    retries: int = 0
    retries_flagged_duplicate: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    slow_connections: int = 0  # held open (a header line every second, never finished) during the whole run

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]

    def summary(self) -> dict[str, Any]:
        return {
            "answers_sent": len(self.sent),
            "retries": self.retries,
            "retries_flagged_duplicate": self.retries_flagged_duplicate,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": len(self.errors),
            "slow_connections_held": self.slow_connections,
            "seconds": self.seconds,
            "answers_per_second": len(self.sent) / self.seconds if self.seconds else float("nan"),
            "latency_ms": {
                "p50": 1000 * self.percentile(50),
                "p95": 1000 * self.percentile(95),
                "max": 1000 * max(self.latencies, default=float("nan")),
            },
        }


def _request(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None = None):
    headers = {"Content-Type": "application/json"} if body is not None else {}
    payload = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, data


def _labeller(url: str, name: str, answers: int, retry_share: float, seed: int, report: LoadReport,
              lock: threading.Lock) -> None:  # fmt: skip
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"the load test URL {url!r} names no host")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    rng = random.Random(seed)
    seen: list[dict[str, Any]] = []
    try:
        for number in range(answers):
            status, data = _request(connection, "GET", f"/api/task?labeller={quote(name)}")
            task = json.loads(data)
            if status != 200:
                raise RuntimeError(f"GET /api/task answered {status}: {data[:200]!r}")
            if task["done"]:
                task = seen[number % len(seen)]  # every task answered: answer again, as a second opinion
            else:
                seen.append(task)
            _request(connection, "GET", task["steps"][0]["url"])
            answer = {
                "answer_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "labeller": name,
                "task_id": task["task_id"],
                "reveal_step": rng.randrange(len(task["steps"])),
                "guess": rng.choice([*task["choices"], task["unsure"]]),
                "features": rng.sample(FEATURES, rng.randint(1, 3)),
            }
            started = time.perf_counter()
            status, data = _request(connection, "POST", "/api/answers", answer)
            elapsed = time.perf_counter() - started
            retried = rng.random() < retry_share
            if retried:
                again, repeat = _request(connection, "POST", "/api/answers", answer)
            with lock:
                report.latencies.append(elapsed)
                report.statuses[status] = report.statuses.get(status, 0) + 1
                if status == 201:
                    report.sent[answer["answer_id"]] = answer
                else:
                    report.errors.append(f"{name}: POST answered {status}: {data[:200]!r}")
                if retried:
                    report.retries += 1
                    report.statuses[again] = report.statuses.get(again, 0) + 1
                    report.retries_flagged_duplicate += int(again == 200 and json.loads(repeat).get("duplicate"))
    except Exception as exc:  # reported, so that one failing labeller does not hide the others' results
        with lock:
            report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    finally:
        connection.close()


def _slow_client(host: str, port: int, stop: threading.Event, held: list[bool], index: int) -> None:
    """A slowloris: sends a request line, then one header line per second and never ends the request."""
    try:
        with socket.create_connection((host, port), timeout=5) as connection:
            connection.sendall(f"GET /api/stats HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
            held[index] = True
            while not stop.wait(1.0):
                connection.sendall(b"X-Slow: 1\r\n")
    except OSError:
        held[index] = False  # the server closed it (or refused it): not held for the whole run


def run_load(
    url: str, labellers: int = 20, answers: int = 50, retry_share: float = 0.1, seed: int = 0, slow: int = 0
) -> LoadReport:
    """``labellers`` concurrent labellers submit ``answers`` answers each to the app at ``url`` while ``slow``
    other connections are held open by slow clients that never finish their request."""
    host = urlsplit(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"the load test only targets this machine (loopback), not {host!r}")
    report, lock = LoadReport(), threading.Lock()
    stop, held = threading.Event(), [False] * slow
    slow_threads = [threading.Thread(target=_slow_client, args=(host, urlsplit(url).port, stop, held, i), daemon=True)
                    for i in range(slow)]  # fmt: skip
    for thread in slow_threads:
        thread.start()
    while slow and sum(held) < slow and any(thread.is_alive() for thread in slow_threads):
        time.sleep(0.05)
    threads = [
        threading.Thread(
            target=_labeller, args=(url, f"loadtest-{i:02d}", answers, retry_share, seed + i, report, lock)
        )
        for i in range(labellers)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.perf_counter() - started
    report.slow_connections = sum(held)  # still open at the end: held during the whole run
    stop.set()
    for thread in slow_threads:
        thread.join()
    return report
