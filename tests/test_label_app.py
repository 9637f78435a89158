"""The labelling app: answer validation, the SQLite store (WAL, idempotent, CSV), the HTTP API, concurrent
labellers, and a restart after a crash."""

from __future__ import annotations

import csv
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from inv_helpers import make_runs

from p2pvision.cli import main
from p2pvision.errors import DatasetLayoutError
from p2pvision.inv.answers import UNSURE, InvalidAnswer, validate_answer
from p2pvision.label.loadtest import run_load
from p2pvision.label.server import LabelApp, make_server, server_url
from p2pvision.label.store import AnswerConflict, AnswerStore
from p2pvision.label.tasks import load_tasks

TASK = {"choices": ["cat", "coffee"], "reveal_percents": [2, 4.5, 8, 13, 20, 30]}


def answer(**changes):
    payload = {
        "answer_id": str(uuid.uuid4()),
        "labeller": "ann",
        "task_id": "abc-L0-C1",
        "reveal_step": 2,
        "guess": "cat",
        "features": ["fur", "eye"],
    }
    payload.update(changes)
    return payload


def test_validation_normalises_text_and_names_each_broken_rule() -> None:
    checked = validate_answer(answer(labeller="  Ann \t Lee ", features=["Fur", "fur", " striped   fur "]), TASK)
    assert checked.labeller == "Ann Lee" and checked.features == ("Fur", "striped fur")
    assert validate_answer(answer(guess=UNSURE, features=["<script>alert(1)</script>"]), TASK).features == (
        "<script>alert(1)</script>",
    )  # stored as typed; every page escapes it
    broken = {
        "answer_id": (answer(answer_id="1234"), "answer_id"),
        "long feature": (answer(features=["x" * 41]), "at most 40"),
        "too many": (answer(features=list("abcdef")), "at most 5"),
        "none": (answer(features=[]), "features must be a list"),
        "a string": (answer(features="fur, eye"), "features must be a list"),
        "control": (answer(features=["fur\u200b"]), "control or invisible"),
        "formula": (answer(features=["=HYPERLINK(1)"]), "spreadsheet"),
        "step": (answer(reveal_step=6), "0 to 5"),
        "bool step": (answer(reveal_step=True), "reveal_step"),
        "guess": (answer(guess="dog"), "not one of"),
        "name": (answer(labeller=""), "labeller is empty"),
        "long name": (answer(labeller="n" * 41), "at most 40"),
        "task": (answer(task_id="../etc"), "task_id"),
    }
    for case, (payload, message) in broken.items():
        with pytest.raises(InvalidAnswer, match=message):
            validate_answer(payload, TASK)
        assert case


def test_store_is_wal_idempotent_and_round_trips_through_csv(tmp_path: Path) -> None:
    with AnswerStore(tmp_path / "a.sqlite") as store:
        assert store.journal_mode() == "wal"
        store.register_tasks([{"task_id": "abc-L0-C1", "image": "cat", "layer": "layer2", "cluster": 1,
                               "target_name": "cat", **TASK}])  # fmt: skip
        first = validate_answer(answer(features=['quote " and, comma', "ümlaut"]), TASK, created=1.5)
        assert store.add(first) is True and store.add(first) is False and store.count() == 1
        with pytest.raises(AnswerConflict):
            store.add(validate_answer({**first.to_dict(), "guess": "coffee"}, TASK))
        store.add(validate_answer(answer(guess="coffee", reveal_step=0), TASK, created=2.0))
        assert store.export_csv(tmp_path / "a.csv") == 2
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8")))
    described = [(r["correct"], r["reveal_percent"], r["layer"]) for r in rows]
    assert described == [("1", "8", "layer2"), ("0", "2", "layer2")]
    with AnswerStore(tmp_path / "b.sqlite") as copy:
        assert copy.import_csv(tmp_path / "a.csv") == (2, 0, [])
        assert copy.import_csv(tmp_path / "a.csv") == (0, 2, [])
        assert copy.answers()[0].features == ('quote " and, comma', "ümlaut")
        rows[1]["features"] = '["x", "' + "y" * 50 + '"]'
        rows[0]["answer_id"] = "not-a-uuid"
        with open(tmp_path / "bad.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        added, duplicates, problems = copy.import_csv(tmp_path / "bad.csv")
        assert (added, duplicates) == (0, 0)
        assert problems[0].startswith("bad.csv:2: answer_id") and "bad.csv:3: feature 2" in problems[1]


def test_label_import_refuses_bad_timestamps_huge_fields_and_non_utf8(tmp_path: Path, capsys) -> None:
    with AnswerStore(tmp_path / "a.sqlite") as store:
        store.add(validate_answer(answer(), TASK, created=1.5))
        store.export_csv(tmp_path / "a.csv")
    row = next(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8")))
    rows = [{**row, "answer_id": str(uuid.uuid4()), "created": created} for created in ("nan", "inf", "-3", "soon")]
    with open(tmp_path / "times.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(row))
        writer.writeheader()
        writer.writerows(rows)
    with AnswerStore(tmp_path / "b.sqlite") as copy:
        added, duplicates, problems = copy.import_csv(tmp_path / "times.csv")
        assert (added, duplicates, copy.count()) == (0, 0, 0)  # nothing stored, nothing reported as stored
        assert len(problems) == 4 and all("created must be" in problem for problem in problems)
    (tmp_path / "huge.csv").write_text(",".join(row) + "\n" + "x" * 200_000 + "\n", encoding="utf-8")
    (tmp_path / "latin.csv").write_bytes((",".join(row) + "\n").encode() + "caf\xe9,".encode("latin-1") * 5)
    db = tmp_path / "c.sqlite"
    for name, message in (("huge.csv", "line 2 is not a valid answers row"), ("latin.csv", "is not UTF-8 text")):
        assert main(["label", "import", str(tmp_path / name), "--db", str(db)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and name in err[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs")
    make_runs(folder)
    return folder


def test_a_maps_file_naming_a_file_outside_its_folder_is_refused(tmp_path: Path) -> None:
    make_runs(tmp_path)
    record_file = next(tmp_path.rglob("clustermaps.json"))
    record = json.loads(record_file.read_text())
    cluster = next(c for layer in record["layers"] for c in layer["clusters"] if c["kept"])
    for hostile in ("../../../../../../etc/passwd", "/etc/passwd"):
        cluster["reveal"][0] = hostile
        record_file.write_text(json.dumps(record))
        with pytest.raises(DatasetLayoutError, match="lies outside .*refused"):
            load_tasks([tmp_path])


@pytest.fixture()
def served(runs: Path, tmp_path: Path):
    store = AnswerStore(tmp_path / "labels.sqlite")
    app = LabelApp(load_tasks([runs]), store)
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield app, server_url(server)
    server.shutdown()
    server.server_close()
    store.close()


def call(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = url.split("//")[1].strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


def post(url: str, payload, **headers):
    headers = {"Content-Type": "application/json", **headers}
    return call(url, "POST", "/api/answers", json.dumps(payload).encode(), headers)


def test_api_serves_tasks_and_images_and_stores_valid_answers_once(served) -> None:
    app, url = served
    status, headers, page = call(url, "GET", "/")
    assert status == 200 and b'src="/static/app.js"' in page and b"<script>" not in page
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    assert call(url, "GET", "/static/app.js")[0] == 200 and call(url, "GET", "/nothing")[0] == 404
    status, _, body = call(url, "GET", "/api/task?labeller=ann")
    task = json.loads(body)
    assert status == 200 and not task["done"] and task["task_id"] == app.order[0] and len(task["steps"]) == 6
    assert task["choices"] == sorted(task["choices"]) and task["unsure"] == UNSURE
    status, headers, png = call(url, "GET", task["steps"][3]["url"])
    assert status == 200 and headers["Content-Type"] == "image/png" and png.startswith(b"\x89PNG")
    assert call(url, "GET", f"/api/reveal/{task['task_id']}/6.png")[0] == 404
    assert call(url, "GET", "/api/reveal/../../etc/passwd")[0] == 404
    good = answer(task_id=task["task_id"], guess=task["choices"][0])
    assert post(url, good)[0] == 201
    status, _, body = post(url, good)
    assert status == 200 and json.loads(body)["duplicate"] is True
    assert post(url, {**good, "features": ["other"]})[0] == 409
    status, _, body = post(url, answer(task_id=task["task_id"], features=["x" * 99]))
    assert status == 400 and "at most 40" in json.loads(body)["error"]
    assert post(url, answer(task_id="unknown-L0-C0"))[0] == 400
    assert call(url, "POST", "/api/answers", json.dumps(good).encode(), {"Content-Type": "text/plain"})[0] == 415
    big = json.dumps({**good, "pad": "x" * 20000}).encode()
    assert call(url, "POST", "/api/answers", big, {"Content-Type": "application/json"})[0] == 413
    assert post(url, good, Origin="http://evil.example")[0] == 403
    assert call(url, "GET", "/api/task?labeller=x", headers={"Host": "evil.example:80"})[0] == 403  # rebinding
    assert call(url, "POST", "/api/answers", b"{not json", {"Content-Type": "application/json"})[0] == 400
    status, _, body = call(url, "GET", "/api/task?labeller=ann")
    assert json.loads(body)["task_id"] != task["task_id"]  # ann's next task is one she has not answered
    status, _, body = call(url, "GET", "/api/task?labeller=bob")
    assert json.loads(body)["task_id"] == app.order[1]  # bob gets the least-answered task first
    assert json.loads(call(url, "GET", "/api/stats")[2]) == {"answers": 1, "labellers": 1, "tasks": len(app.order)}
    assert app.store.count() == 1


def _raw(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Send raw bytes and read what comes back until the server closes or ``wait`` seconds pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(data)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except TimeoutError:
            pass
    return received


def test_hostile_requests_get_a_json_answer_and_never_hang_the_server(runs: Path, tmp_path: Path, capfd) -> None:
    store = AnswerStore(tmp_path / "labels.sqlite")
    app = LabelApp(load_tasks([runs]), store)
    server = make_server(app, "127.0.0.1", 0, timeout=1.0, max_connections=4)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url, port = server_url(server), server.server_address[1]
    try:
        task = json.loads(call(url, "GET", "/api/task?labeller=ann")[2])
        good = json.dumps(answer(task_id=task["task_id"], guess=task["choices"][0])).encode()
        head = f"POST /api/answers HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        # a body shorter than its Content-Length: answered 408 after the timeout, not a hung handler
        started = time.monotonic()
        reply = _raw(port, (head + f"Content-Length: {len(good) + 50}\r\n\r\n").encode() + good)
        assert reply.startswith(b"HTTP/1.1 408") and b'"error"' in reply and time.monotonic() - started < 4
        # huge integers and deep nesting are invalid answers, not crashes
        for body in (b'{"task_id": ' + b"9" * 5000 + b"}", b"[" * 7000 + b"]" * 7000):
            status, headers, data = call(url, "POST", "/api/answers", body, {"Content-Type": "application/json"})
            assert status == 400 and headers["Content-Type"].startswith("application/json") and json.loads(data)
        # strict media type and origin (scheme included)
        assert call(url, "POST", "/api/answers", good, {"Content-Type": "application/jsonx"})[0] == 415
        assert post(url, json.loads(good), Origin=f"https://127.0.0.1:{port}")[0] == 403
        assert post(url, json.loads(good), Origin=f"http://127.0.0.1:{port}")[0] == 201
        # idle connections beyond the limit: the next one is told 503 at once; once they time out, service resumes
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        time.sleep(0.2)
        assert call(url, "GET", "/api/stats")[0] == 503
        for connection in idle:
            connection.close()
        time.sleep(1.5)
        assert call(url, "GET", "/api/stats")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        store.close()
    assert "Traceback" not in capfd.readouterr().err


def test_concurrent_labellers_lose_and_duplicate_nothing(served) -> None:
    app, url = served
    report = run_load(url, labellers=6, answers=12, retry_share=0.25, seed=1, slow=30)  # and 30 slow clients
    assert report.errors == [] and len(report.sent) == 72 and report.retries > 0 and report.slow_connections == 30
    assert report.retries_flagged_duplicate == report.retries
    stored = {a.answer_id: a for a in app.store.answers()}
    assert set(stored) == set(report.sent)
    for answer_id, sent in report.sent.items():
        assert stored[answer_id].features == tuple(sent["features"]) and stored[answer_id].guess == sent["guess"]
    assert report.percentile(95) > 0 and report.summary()["answers_sent"] == 72


def _start(runs: Path, db: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pvision.cli", "label", "serve", str(runs), "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    for line in process.stdout:
        if line.startswith("labelling app: "):
            return process, line.split()[2]
    process.kill()
    raise AssertionError(f"the server did not start: {process.communicate()[0]}")


def test_a_killed_server_restarts_with_every_answer_and_cli_exports(runs: Path, tmp_path: Path) -> None:
    db = tmp_path / "labels.sqlite"
    process, url = _start(runs, db)
    try:
        report = run_load(url, labellers=3, answers=5, retry_share=0.0, seed=2)
        assert report.errors == [] and len(report.sent) == 15
    finally:
        process.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        process.wait()
    process, url = _start(runs, db)
    try:
        for sent in list(report.sent.values())[:3]:
            status, _, body = post(url, sent)
            assert status == 200 and json.loads(body)["duplicate"] is True
        assert json.loads(call(url, "GET", "/api/stats")[2])["answers"] == 15
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert process.returncode == 0 and "stopped; 15 answers" in output
    from p2pvision.cli import main

    assert main(["label", "export", "--db", str(db), "--out", str(tmp_path / "answers.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "answers.csv", encoding="utf-8")))
    assert {row["answer_id"] for row in rows} == set(report.sent)
    assert main(["label", "import", str(tmp_path / "answers.csv"), "--db", str(tmp_path / "copy.sqlite")]) == 0
    assert AnswerStore(tmp_path / "copy.sqlite").count() == 15
