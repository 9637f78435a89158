"""p2pvision benchmark end to end on tiny models: tables over seeds, resumable cells, a pluggable method, config
errors, and the HTML report in headless Chromium (no console errors, not blank)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from p2pvision.benchmark.config import benchmark_from_dict, load_benchmark
from p2pvision.benchmark.methods import METHODS, Method, register_method
from p2pvision.cli import main
from p2pvision.errors import ConfigError
from p2pvision.explanation import Explanation
from p2pvision.models.p2p import P2PConfig, P2PModel, save_p2p

DATA = {"source": "semisynthetic", "task": "object", "image_size": 32, "n_train": 32, "n_val": 8, "n_test": 12}
GRID = {"name": "grid", "grid": 4}


@register_method
class CentreCrop(Method):
    """A stand-in baseline: the explained classifier sees only the centre quarter of the image."""

    kind = "test_centre"
    options = ("classifier_of",)

    @property
    def depends_on(self) -> list[str]:
        return [self.spec["classifier_of"]]

    def load(self, context) -> None:
        self.model = context.methods[self.spec["classifier_of"]].classifier

    def explain(self, images: torch.Tensor) -> Explanation:
        keep = torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.bool, device=images.device)
        side = images.shape[-1]
        keep[:, side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = True
        predicted = self.model(images * keep.unsqueeze(1)).argmax(1)
        return Explanation("centre", predicted, predicted, pixel_map=keep.float(), keep=keep,
                           evaluations=torch.ones(len(predicted)))  # fmt: skip

    def networks(self):
        return [self.model]


def tiny_config(checkpoint: Path) -> dict:
    return {
        "name": "tiny",
        "seeds": [0, 1],
        "batch_size": 8,
        "examples": 3,
        "stored_images": 4,
        "hardware": {"accelerator": "cpu"},
        "metrics": [
            "accuracy", "kept_fraction", "cost", "precision", "pxap", {"name": "pointing_game", "tolerance": 2},
            "relevance_mass", {"name": "p2p_agreement", "mode": "deletion"},
            {"name": "rise", "mode": "insertion", "steps": 4},
            {"name": "moxi_accuracy", "mode": "deletion", "features": GRID, "steps": 4},
            "saliency_metric", "leakage", "map_similarity",
        ],
        "datasets": {"object": {"data": DATA, "images": 12}},
        "methods": {
            "blackbox": {"kind": "blackbox", "classifier": "test_resnet", "train": {"epochs": 1, "batch_size": 16}},
            "p2p": {"kind": "p2p", "checkpoint": str(checkpoint), "sweep": {"delta": [0.5, 0.99]}},
            "grad_cam": {"kind": "explainer", "explainer": "grad_cam", "explains": "blackbox"},
            "moxi_minus": {"kind": "explainer", "explainer": "moxi_minus", "explains": "blackbox",
                           "params": {"partition": GRID}},
            "centre": {"kind": "test_centre", "classifier_of": "blackbox"},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmark")
    torch.manual_seed(0)
    config = P2PConfig(num_classes=10, image_size=32, classifier="test_resnet", selector_backbone="test_resnet",
                       selector_levels=(1, 2), head_channels=8, max_regions=16, tau_grid=(0.25, 0.5, 1.0),
                       partition={"name": "slic", "n_segments": 16, "compactness": 20.0})  # fmt: skip
    save_p2p(P2PModel(config), folder / "p2p")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(folder / "p2p")))
    out = folder / "out"
    assert main(["benchmark", "--config", str(path), "--out", str(out), "--quiet"]) == 0
    return path, out


def read_rows(out: Path) -> dict[tuple[str, str], dict]:
    rows = csv.DictReader((out / "results.csv").open())
    return {(row["method"], row["metric"]): row for row in rows}


def test_tables_have_every_metric_with_direction_and_spread_over_seeds(benchmark):
    _, out = benchmark
    rows = read_rows(out)
    methods = {"blackbox", "p2p@delta=0.5", "p2p@delta=0.99", "grad_cam", "moxi_minus", "centre"}
    assert {method for method, _ in rows} == methods
    expected = {
        "blackbox": {"accuracy", "evaluations", "seconds", "forward_ratio"},
        "grad_cam": {"precision", "pxap", "pointing_game@2px", "relevance_mass", "deletion@10", "rise_insertion_auc",
                     "moxi_deletion@10", "saliency_metric", "seed_spearman", "seed_ssim", "seed_hog_pearson"},
        "p2p@delta=0.5": {"kept_fraction", "inverse_accuracy", "deletion@20", "precision"},
        "centre": {"kept_fraction", "inverse_accuracy", "precision"},
    }  # fmt: skip
    for method, metrics in expected.items():
        assert metrics <= {metric for m, metric in rows if m == method}, method
    assert ("blackbox", "precision") not in rows  # no map, no mask of its own: not applicable
    assert rows[("blackbox", "evaluations")]["mean"] == "1.0" and rows[("blackbox", "accuracy")]["seeds"] == "2"
    assert rows[("centre", "kept_fraction")]["mean"] == "0.25" and rows[("centre", "kept_fraction")]["std"] == "0.0"
    assert rows[("grad_cam", "rise_insertion_auc")]["higher_is_better"] == "True"
    assert rows[("grad_cam", "moxi_deletion@10")]["higher_is_better"] == "False"
    assert float(rows[("moxi_minus", "evaluations")]["mean"]) == 18.0  # 16 players + empty + top-1 forward pass
    for row in rows.values():
        if row["metric"] not in ("seconds", "forward_ratio"):
            assert not math.isnan(float(row["mean"])), row
    assert float(rows[("p2p@delta=0.5", "seed_spearman")]["mean"]) == pytest.approx(1.0)  # one checkpoint
    markdown = (out / "results.md").read_text()
    assert "| method | accuracy ↑ |" in markdown and "kept_fraction ↓" in markdown and " ± " in markdown
    results = json.loads((out / "results.json").read_text())
    assert results["stability"]["object"]["images"] == 4 and len(results["cells"]) == 12


def test_finished_cells_are_not_recomputed_and_changed_ones_are(benchmark, capsys):
    path, out = benchmark
    cell = out / "cells" / "object" / "grad_cam" / "seed0.json"
    before = cell.stat().st_mtime_ns
    assert main(["benchmark", "--config", str(path), "--out", str(out), "--quiet", "seeds=[0]",
                 "methods.moxi_minus.params.partition.grid=2"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("done earlier") == 5 and "moxi_minus / seed 0: 12 images" in printed
    assert cell.stat().st_mtime_ns == before


def test_report_opens_in_chromium_without_errors_and_is_not_blank(benchmark):
    pytest.importorskip("playwright.sync_api")
    from browser import chromium_page

    _, out = benchmark
    report = out / "report.html"
    text = report.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text  # nothing to fetch
    with chromium_page() as page:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(report.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        assert page.errors == []
    assert len(images) >= 3 * 7 + 3 and all(images)  # plots and the example grid (3 images x (image + 6 methods))
    pixels = np.asarray(shot.resize((shot.width // 4, shot.height // 4)))
    assert shot.height > 900 and pixels.std() > 20 and (pixels.mean(axis=2) < 200).mean() > 0.05


def test_config_errors_name_the_setting():
    base = {"datasets": {"d": {"data": DATA}}, "methods": {"b": {"kind": "blackbox", "classifier": "test_resnet"}}}
    cases = [
        ({"colour": 1}, "unknown key colour; known keys: name, seeds"),
        ({"methods": {"b": {"kind": "magic"}}}, "methods.b.kind: got 'magic'; allowed: p2p, blackbox, explainer"),
        ({"methods": {"b": {"kind": "blackbox", "size": 3}}}, "unknown key methods.b.size; known keys of methods.b"),
        ({"methods": {"e": {"kind": "explainer", "explainer": "grad_cam"}}}, "name the method whose classifier"),
        ({"methods": {"e": {"kind": "explainer", "explainer": "paint", "explains": "b"}}},
         "unknown explainer 'paint'; choose one of"),
        ({"methods": {"p": {"kind": "p2p", "checkpoint": "x", "train": {}}}}, "either a checkpoint or training"),
        ({"methods": {"b": {"kind": "blackbox", "datasets": ["e"]}}}, "names data set 'e', which is not defined"),
        ({"metrics": [{"name": "rise", "mode": "up"}]}, "mode must be one of insertion, deletion"),
        ({"seeds": 3}, "seeds: got 3; must be a list of integers"),
        ({"datasets": {"d": {"data": DATA}, "p": {"data": {"source": "photos"}}},
          "methods": {"b": {"kind": "blackbox", "classifier": "test_resnet", "datasets": ["d"]},
                      "e": {"kind": "explainer", "explainer": "grad_cam", "explains": "b"}}},
         "methods.e: uses b, none of which runs on data set 'p'"),
    ]
    for change, fragment in cases:
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            benchmark_from_dict({**base, **change})
    with pytest.raises(ConfigError, match="does not exist: give a YAML file or a shipped name"):
        load_benchmark("no-such-benchmark")
    with pytest.raises(ConfigError, match="data set\\(s\\) moon not in benchmark 'cpu': choose from object, scene"):
        load_benchmark("cpu").only(["object", "moon"])
    assert list(load_benchmark("cpu").only(["scene"]).datasets) == ["scene"]


def test_a_method_may_run_on_some_of_the_seeds():
    config = benchmark_from_dict({
        "seeds": [0, 1, 2], "datasets": {"d": {"data": DATA}},
        "methods": {"b": {"kind": "blackbox", "classifier": "test_resnet"},
                    "e": {"kind": "explainer", "explainer": "grad_cam", "explains": "b", "seeds": [1]}},
    })  # fmt: skip
    assert [m.name for m in config.methods_for("d", 0)] == ["b"]
    assert [m.name for m in config.methods_for("d", 1)] == ["b", "e"] and config.cell_count() == 4
    with pytest.raises(ConfigError, match="methods.e.seeds: got 1; must be a list of integers"):
        benchmark_from_dict({"datasets": {"d": {"data": DATA}},
                             "methods": {"e": {"kind": "blackbox", "classifier": "test_resnet", "seeds": 1}}})


def test_shipped_benchmark_configs_load():
    for name in ("cpu", "cifar10", "imagenet9", "coco10"):
        config = load_benchmark(name)
        assert config.methods and config.datasets, name
    cpu = load_benchmark("cpu", ["seeds=[0]"])
    assert cpu.seeds == [0] and {"p2p@delta=0.8", "grad_cam", "blackbox"} <= set(cpu.methods)
    assert load_benchmark("cpu").seeds_for("photos") == [0]
    assert "test_centre" in METHODS  # registered by this module: how baselines plug in
