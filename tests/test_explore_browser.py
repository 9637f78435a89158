"""The explorer in headless Chromium: slider moves change the mask, a dropped bad file gets a message and the page
keeps working, file names never run as script, the post-hoc maps and the downloads arrive."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from browser import chromium_page
from explore_helpers import serving, threshold_model, write_images
from PIL import Image
from playwright.sync_api import expect

from p2pvision.explanation import Explanation
from p2pvision.explore.session import Explorer

INJECTED = "<img src=x onerror=window.pwned=1>.png"
# Builds a DataTransfer holding one file and drops it on the drop zone, as a person dragging a file would.
DROP = """([name, data]) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: "image/png" }));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true,
    cancelable: true }));
}"""


def overlay_pixels(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#overlay").screenshot())).convert("RGB")).astype(float)


def test_the_explorer_page_in_chromium(tmp_path: Path) -> None:
    model = threshold_model()
    paths = write_images(tmp_path / "images", [INJECTED, "cat.png"])
    explorer = Explorer(model, paths, methods=("grad_cam",))
    with serving(explorer) as url, chromium_page() as page:
        page.goto(url)
        expect(page.locator("#overlay")).to_have_attribute("data-tau", "1")  # delta 0.99 is never reached: tau 1
        assert page.locator("#picker option").all_text_contents() == [INJECTED, "cat.png"]

        page.locator("#tau").fill("0.3")
        expect(page.locator("#overlay")).to_have_attribute("data-tau", "0.3")
        expect(page.locator("#overlay")).to_have_attribute("data-kept", "1")  # every mu < 0: the top region alone
        assert "kept 1 of 16 regions" in page.text_content("#prediction")
        dark = overlay_pixels(page)
        page.locator("#tau").fill("0.7")
        expect(page.locator("#overlay")).to_have_attribute("data-tau", "0.7")
        expect(page.locator("#overlay")).to_have_attribute("data-kept", "16")
        bright = overlay_pixels(page)
        assert bright.mean() > dark.mean() + 20  # the removed regions are dimmed, the kept ones shown
        assert page.text_content("#latency").startswith("mask updated in ")
        assert page.locator("#curve circle").count() == len(model.config.tau_grid)
        assert page.locator("#embedding circle").count() == 16

        curve = explorer.curve("0")
        delta = round((curve[0]["probability"] + curve[-1]["probability"]) / 2, 2)
        page.locator("#delta").fill(str(delta))
        expected = explorer.tau_for_delta("0", delta)
        expect(page.locator("#overlay")).to_have_attribute("data-tau", str(expected).removesuffix(".0"))
        assert float(page.input_value("#tau")) == expected

        page.click("#run-posthoc")
        expect(page.locator("#posthoc figcaption")).to_contain_text("grad_cam (class ")
        shown = explorer.posthoc("0")[0]  # cached: what the page received
        caption = f"grad_cam (class {shown['class']}): 1 model evaluations, {shown['seconds']:.2f} s"
        assert page.text_content("#posthoc figcaption") == caption
        expect(page.locator("#posthoc img")).to_have_js_property("complete", True)
        assert page.evaluate("document.querySelector('#posthoc img').naturalWidth") == 32

        page.locator("#tau").fill("0.8")
        expect(page.locator("#overlay")).to_have_attribute("data-tau", "0.8")
        with page.expect_download() as download:
            page.click("#download-explanation")
        saved = tmp_path / "download.safetensors"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "img_src_x_onerror_window.pwned_1.p2p.safetensors"
        assert Explanation.load(saved).params["tau"] == 0.8

        page.evaluate(DROP, ["notes.png", base64.b64encode(b"this is not an image").decode()])
        expect(page.locator("#status")).to_have_text(
            "Not added: cannot load image 'notes.png': not a recognised image format or the header is corrupt; "
            "check that it is an image file"
        )
        page.locator("#tau").fill("0.2")  # the page still works
        expect(page.locator("#overlay")).to_have_attribute("data-kept", "1")

        buffer = io.BytesIO()
        Image.fromarray(np.full((50, 60, 3), 200, np.uint8)).save(buffer, format="PNG")
        page.set_input_files("#file", files=[{"name": INJECTED, "mimeType": "image/png", "buffer": buffer.getvalue()}])
        expect(page.locator("#picker option")).to_have_count(3)
        assert page.locator("#picker option").nth(2).text_content() == INJECTED
        expect(page.locator("#overlay")).to_have_attribute("src", "/api/overlay/2/0.png")
        assert page.evaluate("window.pwned") is None
        unexpected = [error for error in page.errors if "Failed to load resource" not in error]
        assert unexpected == []  # (the refused upload's 400 is the only resource error)
