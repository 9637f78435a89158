"""The generative-removal claim, the parts the benchmark loop does not measure: robustness of SP / LIME / MP maps
across hyperparameters, how in-distribution each fill is, the fill's share of explainer time, and a figure of the
fills. Run after ``p2pvision benchmark --config generative_removal`` (it uses that run's classifier of seed 0)::

    .venv/bin/python benchmarks/bench_inpainter.py --inpainter results/inpainter/model \\
        --benchmark results/generative_removal

- robustness: each method with two settings of the hyperparameter the paper varies (SP: patch 12 vs 20 px; LIME: 30
  vs 50 superpixels; MP: a 14 vs 28 cell mask) on ``--robust-images`` test images; Spearman, SSIM and HOG-Pearson of
  the two maps (higher: more robust);
- in-distribution: the classifier's accuracy and mean probability of the true class on ``--images`` test images
  whose digit was removed by the fill (a plausible fill drives it to chance, 10%) and whose background was partly
  removed (random superpixels that do not touch the digit, about half of the background: a plausible fill keeps
  it);
- cost: SP and LIME at their CPU defaults (``make_explainer(name, model, removal=...)``) on ``--cost-images``
  images, arms interleaved over ``--rounds`` rounds; the fill's share is the region game's ``removal_seconds`` over
  the explanation's wall time (min and median over rounds), with the load average;
- ``fills.png``: test images with a hole of each kind and every fill of it.

Writes ``bench_inpainter.json`` and ``fills.png`` into ``--benchmark``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from p2pvision.classifier import Classifier
from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.semisynthetic import SemiSyntheticConfig
from p2pvision.explain import make_explainer
from p2pvision.metrics.similarity import hog_similarity, spearman_similarity, ssim_similarity
from p2pvision.models.backbones import load_classifier
from p2pvision.regions import make_partitioner
from p2pvision.regions.partition import partition_batch
from p2pvision.removal import make_removal

FILLS = ("mean", "blur", "telea", "learned")
VARIANTS = {  # the hyperparameter the paper varies, two settings each
    "sliding_patch": [{"patch": 12, "stride": 4}, {"patch": 20, "stride": 4}],
    "lime": [{"num_samples": 100, "partition": ("slic", 30)}, {"num_samples": 100, "partition": ("slic", 50)}],
    "meaningful_perturbation": [{"steps": 60, "mask_size": 14}, {"steps": 60, "mask_size": 28}],
}


def load_avg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def test_images(count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` test images of the built-in object task (as the benchmark's data section makes them)."""
    config = SemiSyntheticConfig(image_size=64, n_train=8000, n_val=1000, n_test=1000)
    dataset = SemiSyntheticDataset("test", "object", config, progress=False)
    samples = [dataset[i] for i in range(count)]
    return {"image": torch.stack([s["image"] for s in samples]), "label": torch.tensor([s["label"] for s in samples]),
            "mask": torch.stack([s["object_mask"] for s in samples])}  # fmt: skip


def removals(model: torch.nn.Module, inpainter: str) -> dict[str, object]:
    return {fill: make_removal(f"learned:{inpainter}" if fill == "learned" else fill, model=model) for fill in FILLS}


def background_holes(images: torch.Tensor, masks: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Holes of random SLIC superpixels (50 segments) that do not touch the digit, each kept with probability 1/2."""
    regions = partition_batch(images, make_partitioner("slic", n_segments=50, compactness=20.0))
    generator = torch.Generator().manual_seed(seed)
    holes = torch.zeros_like(masks)
    dilated = torch.nn.functional.max_pool2d(masks.float().unsqueeze(1), 5, 1, 2).squeeze(1) > 0
    for i in range(len(images)):
        labels = regions[i]
        touching = set(labels[dilated[i]].unique().tolist())
        chosen = [label for label in labels.unique().tolist()
                  if label not in touching and torch.rand(1, generator=generator).item() < 0.5]  # fmt: skip
        holes[i] = torch.isin(labels, torch.tensor(chosen, dtype=labels.dtype)) if chosen else False
    return holes


def in_distribution(model: torch.nn.Module, data: dict[str, torch.Tensor], fills: dict) -> dict:
    """Accuracy and mean true-class probability with the digit removed and with background removed, per fill."""
    images, labels, masks = data["image"], data["label"], data["mask"]
    holes = {"digit_removed": masks, "background_removed": background_holes(images, masks)}
    report: dict[str, dict] = {}
    with torch.no_grad():
        clean = model(images).softmax(1)
        report["original"] = {"accuracy": float((clean.argmax(1) == labels).float().mean()),
                              "confidence": float(clean.gather(1, labels[:, None]).mean())}  # fmt: skip
        for fill, removal in fills.items():
            report[fill] = {}
            for name, hole in holes.items():
                composed = torch.cat(
                    [removal(images[i : i + 50], ~hole[i : i + 50]) for i in range(0, len(images), 50)]
                )
                probs = model(composed).softmax(1)
                report[fill][name] = {"accuracy": float((probs.argmax(1) == labels).float().mean()),
                                      "confidence": float(probs.gather(1, labels[:, None]).mean())}  # fmt: skip
    report["background_hole_share"] = float(holes["background_removed"].float().mean())
    return report


def robustness(model: torch.nn.Module, images: torch.Tensor, fills: dict) -> dict:
    """Similarity of each method's maps under two settings of its hyperparameter, per fill (mean over images)."""
    report: dict[str, dict] = {}
    for method, settings in VARIANTS.items():
        report[method] = {}
        for fill, removal in fills.items():
            maps = []
            for setting in settings:
                params = dict(setting)
                if "partition" in params:
                    name, segments = params.pop("partition")
                    params["partitioner"] = make_partitioner(name, n_segments=segments, compactness=20.0)
                explainer = make_explainer(method, model, removal=removal, **params)
                explainer.progress = None
                maps.append(explainer.explain(images).pixel_map.float())
            first, second = maps
            report[method][fill] = {"spearman": float(spearman_similarity(first, second).nanmean()),
                                    "ssim": float(ssim_similarity(first, second).nanmean()),
                                    "hog_pearson": float(hog_similarity(first, second).nanmean())}  # fmt: skip
            print(method, fill, report[method][fill], flush=True)
    return report


def cost(model: torch.nn.Module, images: torch.Tensor, fills: dict, rounds: int) -> dict:
    """The fill's share of SP's and LIME's wall time at their CPU defaults, arms interleaved over rounds."""
    shares: dict[str, dict[str, list[float]]] = {m: {f: [] for f in fills} for m in ("sliding_patch", "lime")}
    seconds: dict[str, dict[str, list[float]]] = {m: {f: [] for f in fills} for m in ("sliding_patch", "lime")}
    loads = []
    for _ in range(rounds):
        for method in shares:
            for fill, removal in fills.items():
                explainer = make_explainer(method, model, removal=removal)
                started = time.perf_counter()
                explanation = explainer.explain(images)
                wall = time.perf_counter() - started
                shares[method][fill].append(explanation.removal_seconds / wall)
                seconds[method][fill].append(wall / len(images))
        loads.append(load_avg())
    return {method: {fill: {"share_min": min(values), "share_median": statistics.median(values),
                            "seconds_per_image_median": statistics.median(seconds[method][fill])}
                     for fill, values in by_fill.items()} for method, by_fill in shares.items()} | {
        "load_average": loads, "images": len(images), "threads": torch.get_num_threads()}  # fmt: skip


def figure(data: dict[str, torch.Tensor], fills: dict, path: Path) -> None:
    """Rows: an image with a hole (the digit; random superpixels; a patch; a blob); columns: the image, the hole
    (grey), then each fill, named in a header. Upscaled 3x, nearest neighbour."""
    from p2pvision.train.inpainter import HoleSettings, draw_holes

    images, masks = data["image"][:4], data["mask"][:4]
    regions = partition_batch(images, make_partitioner("slic", n_segments=50, compactness=20.0))
    generator = torch.Generator().manual_seed(3)
    drawn = draw_holes(regions, HoleSettings(share=(0.4, 0.5)), generator, torch.tensor([0, 0, 1, 2]))
    holes = torch.stack([masks[0], drawn[1], drawn[2], drawn[3]])
    columns = [images, torch.where(holes.unsqueeze(1), torch.full_like(images, 0.5), images)]
    columns += [removal(images, ~holes) for removal in fills.values()]
    grid = torch.cat([torch.cat(list(column), dim=1) for column in columns], dim=2)  # (3, 4*64, cols*64)
    array = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array).resize((array.shape[1] * 3, array.shape[0] * 3), Image.NEAREST)
    labelled = Image.new("RGB", (picture.width, picture.height + 28), "white")  # a header naming each column
    labelled.paste(picture, (0, 28))
    draw, width = ImageDraw.Draw(labelled), picture.width // len(columns)
    for number, name in enumerate(["image", "hole (grey)", *fills]):
        draw.text((number * width + width // 2, 14), name, fill="black", anchor="mm", font_size=18)
    labelled.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inpainter", default="results/inpainter/model")
    parser.add_argument("--benchmark", default="results/generative_removal")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--robust-images", type=int, default=8)
    parser.add_argument("--cost-images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["robustness", "cost", "distribution"])
    args = parser.parse_args()
    out = Path(args.benchmark)
    folder = next((out / "models").glob("object-classifier-efcca507075f2750/model"), None) or sorted(
        (out / "models").glob("object-classifier-*/model"))[-1]  # fmt: skip
    model = load_classifier(folder).eval()
    if not isinstance(model, Classifier):
        raise TypeError(f"{folder} is not a classifier")
    data = test_images(args.images)
    fills = removals(model, args.inpainter)
    figure(data, fills, out / "fills.png")
    report: dict = {"classifier": str(folder), "inpainter": args.inpainter, "load_average_start": load_avg(),
                    "columns_of_fills_png": ["image", "hole", *FILLS]}  # fmt: skip
    if "distribution" not in args.skip:
        report["in_distribution"] = in_distribution(model, data, fills)
        report["in_distribution"]["images"] = args.images
        print(json.dumps(report["in_distribution"], indent=1), flush=True)
    if "cost" not in args.skip:
        report["cost"] = cost(model, data["image"][: args.cost_images], fills, args.rounds)
        print(json.dumps(report["cost"], indent=1), flush=True)
    if "robustness" not in args.skip:
        report["robustness"] = robustness(model, data["image"][: args.robust_images], fills)
        report["robustness"]["images"] = args.robust_images
    report["load_average_end"] = load_avg()
    (out / "bench_inpainter.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out / 'bench_inpainter.json'} and {out / 'fills.png'}")


if __name__ == "__main__":
    main()
