"""The learned inpainter: training (it learns; resume), the removal it gives (known pixels bit-identical, batched,
gradients through the blend), the holes it trains on, LaMa's TorchScript format, the command line and its errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from torch import Tensor, nn

from p2pvision.cli.explain import add_explain_command
from p2pvision.cli.train import add_train_command
from p2pvision.errors import ConfigError, WeightsError
from p2pvision.removal import GatedInpainter, LamaInpaint, LearnedInpaint, make_removal, save_inpainter
from p2pvision.removal.learned import _coarser, _finer, harmonic_fill
from p2pvision.train.inpainter import (
    HOLE_KINDS,
    HoleSettings,
    InpainterLightning,
    draw_holes,
    load_inpainter_experiment,
    photo_crops,
    superpixel_maps,
)

TINY = ["data.image_size=16", "data.n_train=64", "data.n_val=8", "data.n_test=12", "model.channels=8",
        "model.scale=2", "model.dilations=[2]", "train.batch_size=16", "train.lr=0.01", "holes.segments=[6,12]",
        "train.trainer={accelerator: cpu, log_every_n_steps: 1}"]  # fmt: skip


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p2pvision")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_explain_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny inpainter trained on the built-in background photos (16 px crops), 2 epochs, through the CLI."""
    out = tmp_path_factory.mktemp("inpainter") / "run"
    assert run(["train", "--config", "inpainter", "--out", str(out), *TINY, "train.epochs=2"]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_the_inpainter_learns() -> None:
    """A tiny network's training loss (L1 inside the hole) on 16 crops of the background photos (with their holes)
    falls by a quarter from its untrained start, the harmonic first fill."""
    config = load_inpainter_experiment("inpainter", TINY)
    crops = photo_crops("train", 16, 16, 0)
    segments = torch.from_numpy(superpixel_maps(crops, config.holes, 0).astype(np.int64))
    holes = draw_holes(segments, config.holes, torch.Generator().manual_seed(0))
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    module = InpainterLightning(config.to_dict())
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and much faster on a busy machine
    try:
        for _ in range(100):
            loss, errors = module.loss(images, holes)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
    finally:
        torch.set_num_threads(threads)
    assert np.mean(losses[-10:]) < 0.75 * np.mean(losses[:10])
    assert torch.isfinite(errors).all() and errors.shape == (16,)


def test_training_writes_a_model_whose_fill_keeps_known_pixels(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    test = metrics["test"]["l1_hole"]
    assert set(test) == {"learned", "telea", "mean_colour"} and metrics["test"]["images"] == 12
    assert all(set(values) == {"all", *HOLE_KINDS} for values in test.values())
    assert 0 < test["learned"]["all"] < test["mean_colour"]["all"]  # the push-pull start already beats the mean
    assert (out / "model" / "model.safetensors").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "logs" / "metrics.csv").read_text().count("\n") > 2

    removal = make_removal(f"learned:{out / 'model'}")
    assert isinstance(removal, LearnedInpaint) and removal.hole_dependent
    images = torch.rand(5, 3, 16, 16)
    keep = torch.rand(5, 16, 16) > 0.5
    keep[3] = True  # nothing removed
    keep[4] = False  # nothing kept: grey
    filled = removal(images, keep)
    assert torch.equal(filled[keep.unsqueeze(1).expand_as(filled)], images[keep.unsqueeze(1).expand_as(images)])
    assert torch.equal(filled[3], images[3]) and torch.all(filled[4] == 0.5)
    assert not torch.equal(filled[0], images[0])  # the hole was filled
    network = removal.network
    fill = network(images[:3], ~keep[:3])
    expected = torch.where(keep[:3].unsqueeze(1), images[:3], fill)
    assert torch.allclose(filled[:3], expected, atol=1e-6)  # the network's own fill, batched
    soft = torch.full((2, 16, 16), 0.3, requires_grad=True)  # soft masks: gradients flow through the blend
    pixels = images[:2].clone().requires_grad_(True)
    removal(pixels, soft).sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0 and pixels.grad is not None
    assert torch.allclose(pixels.grad, torch.full_like(pixels, 0.3))
    params = removal.params
    assert params["name"] == "learned" and len(params["sha256"]) == 12 and params["channels"] == 8


def test_training_resumes_and_refuses_a_used_folder(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    with pytest.raises(ConfigError, match="already holds a run"):
        run(["train", "--config", "inpainter", "--out", str(out), *TINY])
    with pytest.raises(ConfigError, match="other settings"):
        run(["train", "--config", "inpainter", "--out", str(out), "--resume", *TINY, "model.channels=4"])
    assert run(["train", "--config", "inpainter", "--out", str(out), "--resume", *TINY, "train.epochs=3"]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3
    assert (out / "logs-resumed-1" / "metrics.csv").is_file()


def test_holes_have_the_shapes_of_the_removals() -> None:
    generator = torch.Generator().manual_seed(0)
    segments = torch.arange(8).repeat_interleave(4).view(1, 32).expand(32, 32).T.contiguous()  # 8 bands of 4 rows
    segments = segments.expand(12, 32, 32)
    settings = HoleSettings(share=(0.3, 0.7), patch=(0.25, 0.5))
    kinds = torch.arange(12) % 3
    holes = draw_holes(segments, settings, generator, kinds)
    assert holes.shape == (12, 32, 32) and holes.dtype == torch.bool
    assert not holes.flatten(1).all(1).any() and holes.flatten(1).any(1).sum() >= 10
    for i in range(0, 12, 3):  # superpixels: every segment wholly in or out
        for label in range(8):
            inside = holes[i][segments[i] == label]
            assert inside.all() or not inside.any()
    for i in range(2, 12, 3):  # blobs: about the drawn share of the image
        assert 0.25 <= holes[i].float().mean() <= 0.75
    weights = HoleSettings(kinds={"blobs": 1.0})
    drawn = draw_holes(segments, weights, torch.Generator().manual_seed(1))
    again = draw_holes(segments, weights, torch.Generator().manual_seed(1))
    assert torch.equal(drawn, again)  # seeded
    assert set(HOLE_KINDS) == {"superpixels", "patches", "blobs"}
    with pytest.raises(ConfigError, match="at least one"):
        load_inpainter_experiment("inpainter", ["holes.kinds={patches: 0}"])


class TinyLama(nn.Module):
    """LaMa's TorchScript signature (image in [0,1], mask 1 in the hole) with a convolution as the model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        if image.shape[2] % 8 != 0 or image.shape[3] % 8 != 0:
            raise RuntimeError("sides must be multiples of 8")
        return torch.sigmoid(self.conv(torch.cat([image * (1 - mask), mask], dim=1)))


def test_lama_torchscript_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = TinyLama().eval()
    path = tmp_path / "big-lama.pt"
    torch.jit.script(reference).save(str(path))
    removal = make_removal(f"lama:{path}")
    assert isinstance(removal, LamaInpaint) and removal.params["modulo"] == 8
    images, keep = torch.rand(3, 3, 20, 21), torch.rand(3, 20, 21) > 0.4
    filled = removal(images, keep)
    padded = torch.nn.functional.pad(images, (0, 3, 0, 4), mode="replicate")
    hole = torch.nn.functional.pad((~keep).float().unsqueeze(1), (0, 3, 0, 4), mode="replicate")
    with torch.no_grad():
        expected = reference(padded, hole)[:, :, :20, :21]
    assert torch.allclose(filled, torch.where(keep.unsqueeze(1), images, expected), atol=1e-6)
    assert torch.equal(filled.permute(1, 0, 2, 3)[:, keep], images.permute(1, 0, 2, 3)[:, keep])
    small = LamaInpaint(str(path), batch_size=1)  # batches of one give the same fill
    assert torch.allclose(small(images, keep), filled, atol=1e-6)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="not a TorchScript file"):
        make_removal(f"lama:{garbage}")
    with pytest.raises(WeightsError, match="does not exist"):
        make_removal(f"lama:{tmp_path / 'missing.pt'}")


def test_learned_removal_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        make_removal(f"learned:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="only learned, lama take a file"):
        make_removal("telea:somewhere")
    folder = save_inpainter(GatedInpainter(4, 2, (1,)), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "channels": 6}))
    with pytest.raises(WeightsError, match="cannot be loaded"):
        make_removal(f"learned:{folder}")
    (folder / "config.json").write_text(json.dumps({**config, "version": 1}))
    with pytest.raises(WeightsError, match="version 1.*train it again"):
        make_removal(f"learned:{folder}")
    (folder / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="not a p2pvision inpainter"):
        make_removal(f"learned:{folder / 'model.safetensors'}")


def test_explain_cli_with_the_learned_removal(trained: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    out, _ = trained
    image = tmp_path / "cat.png"
    Image.fromarray(np.asarray(Image.fromarray(data.chelsea()).resize((48, 40)))).save(image)
    code = run(["explain", str(image), "--method", "lime", "--removal", f"learned:{out / 'model'}", "--param",
                "num_samples=12", "--superpixels", "8", "--model", "test_resnet", "--weights", "none", "--out",
                str(tmp_path / "out"), "--quiet"])  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "out" / "cat.lime.json").read_text())
    assert record["params"]["removal"]["name"] == "learned"
    assert record["params"]["removal"]["path"] == str(out / "model")
    with pytest.raises(ConfigError, match="unknown removal 'learnd'"):
        run(["explain", str(image), "--method", "lime", "--removal", "learnd:x", "--model", "test_resnet",
             "--weights", "none", "--out", str(tmp_path / "out2")])  # fmt: skip


def test_the_first_fill_is_harmonic() -> None:
    """A linear ramp is harmonic: the first fill of a hole in it comes back close to the ramp (far closer than the
    mean colour), known cells keep their means, and an untrained network's fill is that first fill, upsampled."""
    ramp = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(2, 3, 32, 32).contiguous()
    known = torch.ones(2, 1, 32, 32)
    known[0, :, 8:24, 6:26] = 0  # a patch
    known[1, :, :, 10:20] = 0  # a band across the image
    fill = harmonic_fill(ramp * known, known, iterations=50, fine_iterations=50)
    hole = known == 0
    assert (fill - ramp).abs()[hole.expand_as(ramp)].max() < 0.03
    mean = (ramp * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)
    assert (fill - ramp).abs()[hole.expand_as(ramp)].mean() < 0.2 * (mean - ramp).abs()[hole.expand_as(ramp)].mean()
    assert torch.equal(fill[~hole.expand_as(ramp)], ramp[~hole.expand_as(ramp)])
    network = GatedInpainter(channels=4, scale=2, dilations=(1,)).eval()
    with torch.no_grad():
        network.out.weight.zero_()
        images = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
        holes = torch.zeros(1, 64, 64, dtype=torch.bool)
        holes[0, 16:48, 16:48] = True
        filled = network(images, holes)
    assert (filled - images).abs()[holes.unsqueeze(1).expand_as(images)].max() < 0.05


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (1, 6)])
def test_the_pyramid_steps_equal_torchs_pooling_and_interpolation(size: tuple[int, int]) -> None:
    """The fast pyramid steps are the operators they replace: 2x2 means as ``avg_pool2d(2, ceil_mode=True)``
    (odd sides included) and the nearest upsampling as ``F.interpolate(mode="nearest")``."""
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_coarser(x), torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True))
    for target in [(2 * size[0], 2 * size[1]), (size[0] + 1, size[1] + 3)]:
        torch.testing.assert_close(_finer(x, torch.Size(target)),
                                   torch.nn.functional.interpolate(x, size=target, mode="nearest"))  # fmt: skip


def test_benchmark_cells_with_an_inpainter_are_keyed_by_its_weights(tmp_path: Path) -> None:
    """A benchmark cell's key holds the digest of the inpainter it removes with: retraining the file at the same
    path changes the key (the cell is recomputed), other removals and a missing file add nothing."""
    from p2pvision.benchmark.engine import _keyed
    from p2pvision.removal import removal_weights_digest

    torch.manual_seed(0)
    folder = save_inpainter(GatedInpainter(channels=4, scale=2), tmp_path / "model")
    settings = {"kind": "explainer", "params": {"patch": 16, "removal": f"learned:{folder}"}, "family": "sp"}
    first = _keyed(settings)["params"]["removal_sha256"]
    assert first == removal_weights_digest(f"learned:{folder}/model.safetensors") and len(first) == 12
    torch.manual_seed(1)
    save_inpainter(GatedInpainter(channels=4, scale=2), folder)  # retrained in place
    assert _keyed(settings)["params"]["removal_sha256"] != first
    assert _keyed({"params": {"removal": "telea"}}) == {"params": {"removal": "telea"}}
    assert _keyed({"removal": f"learned:{tmp_path / 'absent'}"}) == {"removal": f"learned:{tmp_path / 'absent'}"}
