"""The explorer without a browser: known masks under tau, delta mapped to the tau the model's search picks, cached
features, the HTTP API (uploads, limits, origins, downloads) and the command's one-line errors."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import numpy as np
import pytest
import torch
from explore_helpers import THRESHOLD, serving, threshold_model, write_images
from PIL import Image

from p2pvision.cli import main
from p2pvision.explanation import Explanation
from p2pvision.explore.server import MAX_UPLOAD
from p2pvision.explore.session import Explorer, download_stem, image_inputs
from p2pvision.models.p2p import save_p2p

INJECTED = "<img src=x onerror=window.pwned=1>.png"


@pytest.fixture(scope="module")
def model():
    return threshold_model()


@pytest.fixture()
def explorer(model, tmp_path: Path) -> Explorer:
    paths = write_images(tmp_path / "images", ["cat.png", INJECTED])
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return Explorer(model, [*paths, tmp_path / "images" / "broken.png"], methods=("grad_cam", "rise"))


def test_the_mask_follows_tau_and_delta_picks_the_tau_the_model_searches(model, explorer: Explorer) -> None:
    calls, classified = [], []
    features, classify = model.selector.features, model.classify_regions
    model.selector.features = lambda images: calls.append(1) or features(images)  # type: ignore[method-assign]

    def counted(images, regions, masks):
        classified.append(len(masks))
        return classify(images, regions, masks)

    model.classify_regions = counted  # type: ignore[method-assign]
    try:
        below, above = explorer.view("0", 0.3), explorer.view("0", 0.7)
        again = explorer.view("0", 0.5)
    finally:
        del model.selector.features, model.classify_regions
    assert len(calls) == 1  # the selector backbone ran once; each tau re-ran only the head (and the classifier)
    # The classifier ran once per distinct mask: the top region alone at 0.3 (every mu < 0, and the hard mask keeps
    # at least one region), then the full one in the curve over the grid.
    assert classified == [1, 1]
    assert [view["classified"] for view in (below, above, again)] == [True, False, False]
    assert (below["kept_regions"], below["kept_fraction"]) == (1, 1 / 16)
    assert (above["kept_regions"], above["regions"], above["kept_fraction"]) == (16, 16, 1.0)
    assert explorer.overlay("0", 0) != explorer.overlay("0", 1)
    curve = above["curve"]
    assert [point["tau"] for point in curve] == list(model.config.tau_grid)
    assert [point["kept_fraction"] for point in curve] == [1.0 if p["tau"] > THRESHOLD else 1 / 16 for p in curve]
    image, regions = explorer.entries["0"].image, explorer.entries["0"].regions
    for tau in (0.3, 0.7):  # the curve and the view agree with the model's own explanation at that tau
        own = model.explain(image, regions=regions, tau=tau)
        view = explorer.view("0", tau)
        assert view["probability"] == pytest.approx(float(own.probabilities.max()), abs=1e-5)
        assert view["kept_fraction"] == float(own.kept_fraction[0])
    low, high = curve[0]["probability"], curve[-1]["probability"]
    assert abs(high - low) > 1e-4  # an empty and a full input differ, so delta can fall between them
    deltas = [(low + high) / 2, max(low, high) + 1e-3, min(low, high) - 1e-3]
    for delta in deltas:
        searched = float(model.explain(image, regions=regions, delta=delta).extras["tau"][0])
        assert explorer.tau_for_delta("0", delta) == pytest.approx(searched)
    assert explorer.tau_for_delta("0", deltas[1]) == curve[-1]["tau"]  # never certain: the largest tau
    assert explorer.tau_for_delta("0", deltas[2]) == curve[0]["tau"]


def test_the_least_recently_used_images_are_unloaded(explorer: Explorer, monkeypatch) -> None:
    monkeypatch.setattr("p2pvision.explore.session.LOADED_KEPT", 1)
    first = explorer.view("0", 0.7)
    explorer.view("1", 0.7)
    assert explorer.entries["0"].features is None and explorer.entries["0"].image is None
    assert explorer.overlay("0", 0) is None and explorer.entries["1"].features is not None
    again = explorer.view("0", 0.7)  # read and computed again
    assert again["probability"] == pytest.approx(first["probability"]) and again["curve"] == first["curve"]


def test_embeddings_are_the_principal_components_of_the_present_regions() -> None:
    embeddings = torch.zeros(5, 3)
    embeddings[:4] = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 0.5, 0], [0, -0.5, 0]])
    logits = torch.tensor([1.0, -1, 2, -2, 0])
    areas = torch.tensor([4.0, 4, 4, 4, 0])  # the last slot is empty
    points = Explorer._embedding(embeddings, logits, areas)
    assert [p["region"] for p in points] == [0, 1, 2, 3] and [p["kept"] for p in points] == [True, False, True, False]
    coordinates = np.array([[p["x"], p["y"]] for p in points])
    assert np.allclose(np.abs(coordinates), [[1, 0], [1, 0], [0, 0.5], [0, 0.5]], atol=1e-9)


def png(size: tuple[int, int] = (20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def call(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_the_http_api_answers_refuses_and_downloads(model, explorer: Explorer) -> None:
    with serving(explorer) as url:
        status, headers, body = call(url, "GET", "/")
        assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"] and b"<script" in body
        info = json.loads(call(url, "GET", "/api/info")[2])
        assert [image["name"] for image in info["images"]] == ["cat.png", INJECTED, "broken.png"]  # shown as text
        assert info["tau_grid"] == list(model.config.tau_grid) and info["delta"] == model.config.delta
        view = json.loads(call(url, "GET", "/api/view/0?tau=0.7")[2])
        assert view["kept_fraction"] == 1.0 and view["tau"] == 0.7
        status, headers, picture = call(url, "GET", view["overlay"])
        assert status == 200 and Image.open(io.BytesIO(picture)).size == (32, 32)
        delta = (view["curve"][0]["probability"] + view["curve"][-1]["probability"]) / 2
        by_delta = json.loads(call(url, "GET", f"/api/view/0?delta={delta}")[2])
        assert by_delta["tau"] == explorer.tau_for_delta("0", delta)
        refused = {
            "/api/view/0?tau=1.5": (400, "tau must lie in [0, 1]"),
            "/api/view/0?tau=nan": (400, "tau must lie in [0, 1]"),
            "/api/view/0": (400, "give either ?tau=T"),
            "/api/view/0?tau=0.2&delta=0.9": (400, "give either ?tau=T"),
            "/api/view/9?tau=0.5": (404, "no image with id '9'"),
            "/api/view/2?tau=0.5": (422, "broken.png': "),  # a listed file that is not an image, named
            "/api/overlay/0/999.png": (404, "no such picture"),
            "/../../etc/passwd": (404, "no page at"),
        }
        for path, (code, message) in refused.items():
            status, _, body = call(url, "GET", path)
            assert status == code and message in json.loads(body)["error"], path
        status, _, body = call(url, "GET", "/", headers={"Host": "attacker.example:80"})
        assert status == 403
        status, _, body = call(url, "GET", "/api/posthoc/0", headers={"Sec-Fetch-Site": "cross-site"})
        assert status == 403 and "its own page only" in json.loads(body)["error"]
        assert explorer.entries["0"].posthoc is None  # no work done for another site's page

        status, _, body = call(url, "POST", f"/api/images?name={quote(INJECTED)}", png(), {"Content-Type": "image/png"})
        added = json.loads(body)
        assert status == 201 and added["name"] == INJECTED
        assert json.loads(call(url, "GET", f"/api/view/{added['id']}?tau=0.1")[2])["kept_regions"] == 1
        uploads = {  # (body, headers) -> (status, message)
            "garbage": ((b"not an image", {"Content-Type": "application/octet-stream"}),
                        (400, "cannot load image 'notes.png'")),
            "type": ((png(), {"Content-Type": "text/plain"}), (415, "send an image file as")),
            "origin": ((png(), {"Content-Type": "image/png", "Origin": "http://evil.example"}), (403, "own page only")),
        }  # fmt: skip
        for case, ((data, extra), (code, message)) in uploads.items():
            status, _, body = call(url, "POST", "/api/images?name=notes.png", data, extra)
            assert status == code and message in json.loads(body)["error"], case
        status, _, body = call(url, "POST", "/api/images?name=big.png", b"",
                               {"Content-Type": "image/png", "Content-Length": str(MAX_UPLOAD + 1)})  # fmt: skip
        assert status == 413 and f"at most {MAX_UPLOAD} bytes" in json.loads(body)["error"]

        status, headers, figure = call(url, "GET", "/api/figure/1.png?tau=0.7")
        assert status == 200 and Image.open(io.BytesIO(figure)).format == "PNG"
        assert headers["Content-Disposition"] == 'attachment; filename="img_src_x_onerror_window.pwned_1.p2p.png"'
        status, headers, data = call(url, "GET", "/api/explanation/0.safetensors?delta=0.5")
        assert status == 200 and headers["Content-Disposition"].endswith('cat.p2p.safetensors"')
        (Path(explorer.entries["0"].path).parent / "saved.safetensors").write_bytes(data)
        loaded = Explanation.load(Path(explorer.entries["0"].path).parent / "saved.safetensors")
        entry = explorer.entries["0"]
        own = model.explain(entry.image, regions=entry.regions, delta=0.5)
        assert loaded.params["delta"] == 0.5 and torch.equal(loaded.keep, own.keep)
        saved = Path(explorer.entries["0"].path).parent / "tau.safetensors"
        saved.write_bytes(explorer.explanation_file("0", tau=0.8))  # a fixed tau's region embeddings are a view
        assert Explanation.load(saved).keep.all()

        result = json.loads(call(url, "GET", "/api/posthoc/0")[2])["methods"]
        assert [m["method"] for m in result] == ["grad_cam", "rise"] and result[0]["evaluations"] == 1
        assert result[1]["evaluations"] == 65  # RISE's 64 interactive masks and one pass for the class
        for method in result:
            status, _, picture = call(url, "GET", method["url"])
            assert status == 200 and Image.open(io.BytesIO(picture)).size == (32, 32)


def test_a_folder_is_listed_as_an_image_folder_data_set(tmp_path: Path) -> None:
    write_images(tmp_path / "set" / "dog", ["c.jpg"])
    write_images(tmp_path / "set" / "cat", ["b.png", "a.png"])
    write_images(tmp_path / "set", ["top.png"])
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    names = [str(tmp_path / "set"), str(tmp_path / "elsewhere" / "x.png")]
    paths, shown = image_inputs(names, limit=10)
    assert shown == ["top.png", "cat/a.png", "cat/b.png", "dog/c.jpg", "x.png"]
    assert paths[1] == tmp_path / "set" / "cat" / "a.png" and paths[-1] == tmp_path / "elsewhere" / "x.png"
    assert image_inputs(names, limit=2)[1] == ["top.png", "cat/a.png"]


def test_download_names_and_the_commands_errors(model, tmp_path: Path, capsys) -> None:
    assert download_stem("../../a b$c.png") == "a_b_c" and download_stem("....png") == "image"
    checkpoint = save_p2p(model, tmp_path / "model")
    for argv, message in (
        (["explore", str(tmp_path / "nowhere")], "P2P checkpoint"),
        (["explore", str(checkpoint), str(tmp_path / "missing.png")], "missing.png' does not exist"),
        (["explore", str(checkpoint), "--port", "70000"], "--port: got '70000'"),
        (["explore", str(checkpoint), "--method", "grad_cam,moxxi"], "did you mean 'moxi'?"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "Traceback" not in err[0], err
    # Such mistakes are reported before torch loads.
    argv = ["explore", str(checkpoint), "--method", "moxxi"]
    runner = f"import sys; from p2pvision.cli import main; print(main({argv!r}), 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"] and "did you mean 'moxi'?" in result.stderr, result.stderr
