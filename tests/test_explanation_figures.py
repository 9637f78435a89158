"""Figures for papers: one panel per method with a colour bar, diverging maps centred at 0, full captions, and
PNG at print resolution plus PDF and SVG."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.colors import TwoSlopeNorm
from PIL import Image

from p2pvision.explanation import Explanation
from p2pvision.report.explanation_figures import (
    PRINT_DPI,
    class_caption,
    explanation_figure,
    method_caption,
    save_figure,
)


def explanation(pixel_map: torch.Tensor, method: str = "sliding_patch", **params) -> Explanation:
    batch = pixel_map.shape[0]
    return Explanation(
        method=method,
        predicted=torch.tensor([3] * batch),
        target=torch.tensor([3] * batch),
        pixel_map=pixel_map,
        evaluations=torch.full((batch,), 40.0),
        seconds=2.5 * batch,
        params=params,
    )


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_captions_name_class_probability_method_removal_and_cost() -> None:
    result = explanation(torch.zeros(1, 16, 16), removal={"name": "telea"},
                         partition={"name": "grid", "grid": [4, 4]}, value="log_odds")  # fmt: skip
    probabilities = torch.zeros(1, 5)
    probabilities[0, 3] = 0.87
    assert class_caption(result, 0, ["a", "b", "c", "cat", "e"], probabilities) == "cat (p = 0.87)"
    assert class_caption(result, 0, None) == "class 3"
    assert method_caption(result, 0) == "sliding_patch · removal telea · 4x4 grid\n40 evaluations · 2.5 s"
    gradients = explanation(torch.zeros(1, 16, 16), method="grad_cam", partition={"name": "grid", "grid": 14})
    assert method_caption(gradients, 0) == "grad_cam\n40 evaluations · 2.5 s"  # no removal: regions not named


def test_signed_maps_are_centred_at_zero_and_every_map_has_a_colour_bar(images: torch.Tensor) -> None:
    signed = explanation(torch.linspace(3, -1, 2 * 16 * 16).reshape(2, 16, 16), value="log_odds")
    positive = explanation(torch.rand(2, 16, 16), method="grad_cam")
    figure = explanation_figure(images, [signed, positive], index=1, class_names=[str(i) for i in range(5)])
    map_axes = [axis for axis in figure.axes if axis.get_title().startswith(("sliding_patch", "grad_cam"))]
    assert len(map_axes) == 2
    signed_norm = map_axes[0].images[-1].norm
    assert isinstance(signed_norm, TwoSlopeNorm) and signed_norm.vcenter == 0
    assert signed_norm.vmin == -signed_norm.vmax == -float(signed.pixel_map[1].abs().max())
    assert map_axes[1].images[-1].norm.vmin == 0
    labels = [axis.get_xlabel() for axis in figure.axes if axis.get_visible()]
    assert "Δ log-odds: against ← 0 → for the class" in labels and "importance" in labels
    figure.clear()


def test_save_writes_print_resolution_png_pdf_and_svg(images: torch.Tensor, tmp_path: Path) -> None:
    figure = explanation_figure(images, [explanation(torch.rand(2, 16, 16))], index=0)
    written = save_figure(figure, tmp_path / "figure")
    assert [path.suffix for path in written] == [".png", ".pdf", ".svg"]
    assert written[1].read_bytes().startswith(b"%PDF") and b"<svg" in written[2].read_bytes()
    with Image.open(written[0]) as png:
        assert png.info["dpi"][0] == pytest.approx(PRINT_DPI, abs=1)
        assert png.width >= 2 * 2.6 * PRINT_DPI * 0.9  # two panels of 2.6 inches at print resolution
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary files left


def test_a_figure_needs_an_explanation(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="at least one"):
        explanation_figure(images, [])


def test_report_cost_axes_read_as_plain_numbers() -> None:
    from p2pvision.report.html_plots import _plain_number, cost_figure

    assert [_plain_number(v) for v in (0.1, 1, 10, 100, 1000, 20000)] == ["0.1", "1", "10", "100", "1k", "20k"]
    assert cost_figure({"grad_cam": {"evaluations": 1}, "moxi": {"evaluations": 19306}}).startswith("data:image/png")
