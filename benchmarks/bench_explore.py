"""The explorer's latency in a real browser: the time from a tau slider move to the updated mask on the page.

Starts ``p2pvision explore``'s server on a P2P model (by default the default settings at 224 px, vit_tiny_patch16_224
classifier and mobilenetv3_large_100 selector, with untrained weights: the cost does not depend on them; or
``--checkpoint``), opens the page in headless Chromium (the system's, as the tests do), and moves the tau slider
``--rounds`` times per image. The page itself measures each move, from the slider's input event to the load of the
new mask image (``#latency``), and reports the server's part (head, classifier unless the mask was classified before,
rendering), apart for moves that ran the classifier and moves that did not (every other move forgets the masks
classified before, so that both kinds are measured); opening an image
(partition, selector backbone once, the curve over the tau grid) is timed apart. Prints min / median / max with the
load average and the thread count, and saves a full-page screenshot (after the post-hoc explainers ran).

    OMP_NUM_THREADS=2 python benchmarks/bench_explore.py --screenshot results/explore/explorer-224.png
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage import data

from p2pvision.explore.server import make_server
from p2pvision.explore.session import Explorer
from p2pvision.models.p2p import P2PConfig, P2PModel, load_p2p
from p2pvision.webserver import server_url

PHOTOS = {"chelsea.png": data.chelsea, "coffee.png": data.coffee, "astronaut.png": data.astronaut}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a P2P checkpoint (default: untrained default settings)")
    parser.add_argument("images", nargs="*", help="image files (default: three scikit-image photos)")
    parser.add_argument("--rounds", type=int, default=10, help="slider moves per image (default: 10)")
    parser.add_argument("--screenshot", default="results/explore/explorer.png", help="full-page PNG to write")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = load_p2p(args.checkpoint) if args.checkpoint else P2PModel(P2PConfig(num_classes=10)).eval()
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(name) for name in args.images]
        for name, photo in [] if paths else PHOTOS.items():
            Image.fromarray(photo()).save(Path(folder) / name)
            paths.append(Path(folder) / name)
        explorer = Explorer(model, paths, title=Path(args.checkpoint or "untrained-default").name)
        server = make_server(explorer, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        try:
            measure(server_url(server), explorer, args)
        finally:
            server.shutdown()
            server.server_close()


def measure(url: str, explorer: Explorer, args: argparse.Namespace) -> None:
    config = explorer.model.config
    print(f"model: classifier {config.classifier}, selector {config.selector_backbone}, {config.image_size} px, "
          f"partition {config.partition}; torch threads {torch.get_num_threads()}; load before "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")  # fmt: skip
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("system Chromium not found: apt-get install chromium")
    page_ms: dict[str, list[int]] = {}
    server_ms: dict[str, list[int]] = {}
    open_s: list[float] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                               args=["--no-sandbox", "--disable-gpu"],
                                                               viewport={"width": 1280, "height": 900})  # fmt: skip
        page = context.new_page()
        page.goto(url)
        overlay = page.locator("#overlay")
        for image in explorer.info()["images"]:
            started = time.perf_counter()
            page.select_option("#picker", image["id"])
            expect(overlay).to_have_attribute("src", re.compile(rf"/api/overlay/{image['id']}/"), timeout=120_000)
            expect(overlay).to_have_attribute("data-tau", re.compile(r"."), timeout=120_000)
            open_s.append(time.perf_counter() - started)
            last = page.get_attribute("#overlay", "data-tau")
            for move in range(args.rounds):
                tau = last
                while tau == last:
                    tau = f"{rng.integers(5, 100) / 100:g}"
                if move % 2 == 0:  # every other move forgets the masks classified, so the classifier runs
                    with explorer.lock:
                        explorer.entries[image["id"]].logits_by_mask.clear()
                page.locator("#tau").fill(tau)
                expect(overlay).to_have_attribute("data-tau", tau, timeout=60_000)
                text = page.text_content("#latency") or ""
                found = re.search(r"mask updated in (\d+) ms \(server: (\d+) ms, (head \+ classifier|head only)", text)
                assert found, text
                kind = "classifier ran" if found.group(3).startswith("head +") else "head only (mask seen before)"
                page_ms.setdefault(kind, []).append(int(found.group(1)))
                server_ms.setdefault(kind, []).append(int(found.group(2)))
                last = tau
        print(f"opening an image (partition, selector backbone, curve over {len(explorer.grid)} taus, first mask): "
              f"{summary([1000 * s for s in open_s])} ms")  # fmt: skip
        moves = [value for values in page_ms.values() for value in values]
        print(f"slider move -> updated mask on the page, {len(moves)} moves: {summary(moves)} ms")
        for kind, values in page_ms.items():
            print(f"  {kind}, {len(values)} moves: page {summary(values)} ms; server {summary(server_ms[kind])} ms")
        print(f"load after {os.getloadavg()[0]:.2f}")
        page.click("#run-posthoc")
        expect(page.locator("#posthoc figcaption").first).to_be_visible(timeout=300_000)
        for caption in page.locator("#posthoc figcaption").all_text_contents():
            print(f"post-hoc: {caption}")
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=args.screenshot, full_page=True)
        print(f"screenshot: {args.screenshot}")
        context.close()


def summary(values: list[float]) -> str:
    return f"min {min(values):.0f} / median {statistics.median(values):.0f} / max {max(values):.0f}"


if __name__ == "__main__":
    main()
