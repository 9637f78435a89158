"""RISE: equal to the straightforward algorithm (one masked image at a time), known answers on a model that reads one
patch, masks as the paper draws them, its cost, and that the one new file is all it takes to appear in the CLI, the
benchmark and its report."""

from __future__ import annotations

import json

import torch
import yaml
from torch import nn

from p2pvision.cli import main
from p2pvision.explain import EXPLAINERS
from p2pvision.explain.rise import RISE
from p2pvision.regions import GridPartitioner
from p2pvision.removal import BlackFill


def patch_model() -> nn.Module:
    """Class 1 grows with the red channel of the top-left 4x4 patch; class 0 is constant."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([0.0, -2.0]))
        model[1].weight[1].view(3, 16, 16)[0, :4, :4] = 0.5
    return model.eval()


def test_masks_are_smooth_upsampled_grids_with_the_keep_probability():
    rise = RISE(patch_model(), removal=BlackFill(), num_masks=400, cells=4, keep_probability=0.3)
    masks = torch.cat(list(rise.masks(16, 16, torch.device("cpu"))))
    assert masks.shape == (400, 16, 16) and masks.min() >= 0 and masks.max() <= 1
    assert abs(float(masks.mean()) - 0.3) < 0.03
    assert ((masks > 0) & (masks < 1)).any()  # bilinear upsampling: soft edges
    assert torch.equal(masks, torch.cat(list(rise.masks(16, 16, torch.device("cpu"), chunk=7))))


def test_rise_equals_the_straightforward_algorithm():
    model, images = patch_model(), torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rise = RISE(model, removal=BlackFill(), partitioner=GridPartitioner(4), num_masks=50, cells=4, batch_size=7)
    result = rise.explain(images, target=1)
    masks = torch.cat(list(rise.masks(16, 16, torch.device("cpu"))))
    expected = torch.zeros(2, 16, 16)
    with torch.no_grad():
        for mask in masks:  # the paper's formula, one masked image at a time
            probability = model(images * mask).softmax(1)[:, 1]
            expected += probability[:, None, None] * mask
    expected /= 50 * 0.5
    assert torch.allclose(result.pixel_map, expected, atol=1e-5)
    assert result.evaluations.tolist() == [51.0, 51.0]  # the masks and the prediction on the full image


def test_rise_finds_the_patch_the_model_reads():
    images = torch.zeros(1, 3, 16, 16)
    images[0, 0, :4, :4] = 1.0
    result = RISE(patch_model(), removal=BlackFill(), partitioner=GridPartitioner(4), num_masks=300, cells=4,
                  value="logit").explain(images, target=1)  # fmt: skip
    inside, outside = result.pixel_map[0, :4, :4].mean(), result.pixel_map[0, 8:, 8:].mean()
    assert inside > outside + 0.1
    assert int(result.order[0, 0]) == 0  # the top-left region ranks first


def test_rise_is_listed_by_the_cli_and_runs_in_the_benchmark_and_its_report(tmp_path, capsys):
    assert "rise" in EXPLAINERS.names()
    try:
        main(["explain", "--help"])
    except SystemExit:
        pass
    listed = " ".join(capsys.readouterr().out.split())
    assert "rise [removal]: num_masks=250" in listed and "(--preset paper: num_masks=4000)" in listed
    config = {
        "name": "rise", "seeds": [0], "batch_size": 4, "examples": 2, "stored_images": 2,
        "hardware": {"accelerator": "cpu"}, "metrics": ["cost", {"name": "rise", "mode": "deletion", "steps": 4}],
        "datasets": {"photos": {"data": {"source": "photos", "image_size": 32}, "images": 2}},
        "methods": {
            "blackbox": {"kind": "blackbox", "classifier": "test_resnet"},
            "rise_map": {"kind": "explainer", "explainer": "rise", "explains": "blackbox",
                         "params": {"num_masks": 8, "partition": {"name": "grid", "grid": 4}}},
        },
    }  # fmt: skip
    path = tmp_path / "rise.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["benchmark", "--config", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    cell = next(cell for cell in results["cells"] if cell["method"] == "rise_map")
    assert cell["values"]["evaluations"] == 8 + 1 and "rise_deletion_auc" in cell["values"]
    assert "rise_map" in (tmp_path / "out" / "report.html").read_text()


def test_rise_is_one_file_of_at_most_80_lines() -> None:
    """Adding an explainer takes one file (issue 11's demonstration): RISE stays within 80 lines."""
    from pathlib import Path

    import p2pvision.explain.rise as module

    assert len(Path(module.__file__).read_text().splitlines()) <= 80
