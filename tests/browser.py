"""Headless Chromium for tests that render pages (HTML report, labelling app).

Playwright drives the system Chromium (Debian package `chromium`, installed by `.ci/run`); Playwright's own
browser download is never used, so the tests run offline.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Path of the system Chromium; a one-line error says how to install it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("system Chromium not found: install it with `apt-get install chromium` (.ci/run does)")
    return path


@contextmanager
def chromium_page() -> Iterator[object]:
    """Yield a Playwright page in a fresh headless Chromium profile; console errors collect in `page.errors`."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        page = context.new_page()
        page.errors = []
        page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        try:
            yield page
        finally:
            context.close()
