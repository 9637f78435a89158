"""End to end in headless Chromium: a labelling round through the real page lands in SQLite, and the global
explanation page built from it renders (not blank, no script from a label runs)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from browser import chromium_page
from inv_helpers import make_runs
from PIL import Image
from playwright.sync_api import expect

from p2pvision.inv.global_explanation import build_global_explanation, write_global_explanation
from p2pvision.inv.runs import find_runs
from p2pvision.label.server import LabelApp, make_server, server_url
from p2pvision.label.store import AnswerStore
from p2pvision.label.tasks import load_tasks

INJECTED = "<img src=x onerror=window.pwned=1>"


def test_a_labelling_round_in_chromium_lands_in_sqlite_and_the_global_page_renders(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_runs(runs, {"chelsea": 0, "coffee": 1})
    store = AnswerStore(tmp_path / "labels.sqlite")
    app = LabelApp(load_tasks([runs]), store)
    server = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with chromium_page() as page:
            page.goto(server_url(server))
            page.fill("#labeller", "Ann")
            page.click("#start")
            page.wait_for_selector("#task:not([hidden])")
            first_task = app.order[0]
            assert page.text_content("#progress") == f"Cluster map 1 of {len(app.order)}"
            page.click("#more")
            page.click("#more")
            assert page.text_content("#percent").startswith("8% of the photo visible (step 3 of 6)")
            expect(page.locator("#reveal")).to_have_js_property("complete", True)
            assert page.evaluate("document.getElementById('reveal').naturalWidth") == 64
            target = app.tasks[first_task]["target_name"]
            page.select_option("#guess", target)
            page.fill("#features", f"fur,  striped fur , {INJECTED}")
            page.click("#submit")
            expect(page.locator("#status")).to_have_text("Saved.")  # (the app's CSP forbids wait_for_function's eval)
            expect(page.locator("#progress")).to_have_text(f"Cluster map 2 of {len(app.order)}")
            assert page.evaluate("window.pwned") is None and page.errors == []
        stored = store.answers()
        assert len(stored) == 1
        answer = stored[0]
        assert (answer.labeller, answer.task_id, answer.reveal_step, answer.guess) == ("Ann", first_task, 2, target)
        assert answer.features == ("fur", "striped fur", INJECTED)
    finally:
        server.shutdown()
        server.server_close()
    loaded = find_runs([runs])
    paths = write_global_explanation(build_global_explanation(loaded, store.answers()), loaded, tmp_path / "global")
    store.close()
    with chromium_page() as page:
        page.goto(paths["html"].as_uri())
        page.wait_for_load_state("load")
        assert page.text_content("h2") == target
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert page.evaluate("document.images.length") >= 2  # the class plot and the labelled cluster map
        page.screenshot(path=str(tmp_path / "global.png"), full_page=True)
        assert page.evaluate("window.pwned") is None and page.errors == []
    shot = np.asarray(Image.open(tmp_path / "global.png").convert("RGB")).astype(float)
    assert shot.shape[0] > 300 and shot.std() > 20 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 500
