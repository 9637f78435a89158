"""Cost of the metrics, and equality and speed against the references they are checked with.

(a) Every metric of ``p2pvision.metrics`` on one batch (64 images, 64 px, timm ``test_resnet`` with random weights):
    milliseconds per image and model evaluations per image (counted by wrapping the model), next to one plain
    forward pass of the same model on the same batch.
(b) PxAP: the streaming histogram of ``PixelAveragePrecision`` against torchmetrics' binned
    ``BinaryAveragePrecision`` (same 101 thresholds) on 16 maps of 224 x 224: value difference and time.
(c) Quantus 0.6 on shared inputs: pointing game, relevance mass accuracy (64 maps of 224 x 224) and region
    perturbation (16 images of 32 px, 8 px patches, a linear model): largest difference and time.

Prints Markdown tables; ``--json PATH`` also writes the numbers. Usage:
    python benchmarks/bench_metrics.py [--json results/bench_metrics.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from p2pvision.metrics.base import EvalInputs
from p2pvision.metrics.localisation import PixelAveragePrecision, pointing_game, relevance_mass
from p2pvision.metrics.registry import make_metric
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner, partition_batch

METRICS = [
    "accuracy", "kept_fraction", "precision", "iou", "pxap", "pointing_game", {"name": "pointing_game", "tolerance": 4},
    "relevance_mass", "box_error", {"name": "p2p_agreement", "mode": "insertion"},
    {"name": "p2p_agreement", "mode": "deletion"}, {"name": "rise", "mode": "insertion", "steps": 16},
    {"name": "rise", "mode": "deletion", "steps": 16},
    {"name": "moxi_accuracy", "mode": "insertion", "features": {"name": "grid", "grid": 8}},
    {"name": "moxi_accuracy", "mode": "deletion", "features": {"name": "grid", "grid": 8}},
    "saliency_metric", "leakage", "map_similarity",
]  # fmt: skip


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def count_images(model: nn.Module) -> list[int]:
    """A one-element list that counts the images going through ``model`` (a forward pre-hook)."""
    counter = [0]
    model.register_forward_pre_hook(lambda module, args: counter.__setitem__(0, counter[0] + args[0].shape[0]))
    return counter


def best_of(function, repeats: int = 3) -> float:
    """Fastest of ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_metrics(batch: int = 64, size: int = 64) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = create_classifier("test_resnet", num_classes=10).eval()
    counter = count_images(model)
    images = torch.rand(batch, 3, size, size)
    regions = partition_batch(images, GridPartitioner(8))
    scores = torch.rand(batch, 64)
    maps = torch.gather(scores, 1, regions.flatten(1)).view(batch, size, size) + 0.01 * torch.rand(batch, size, size)
    mask = torch.zeros(batch, size, size, dtype=torch.bool)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = True
    with torch.no_grad():
        predicted = model(images).argmax(1)
    inputs = EvalInputs(images=images, predicted=predicted, labels=predicted, model=model, pixel_map=maps,
                        regions=regions, scores=scores, keep=maps > 0.5, mask=mask,
                        reference_map=maps.flip(-1))  # fmt: skip
    forward = best_of(lambda: model(images))
    rows = [{"metric": "plain forward pass", "ms_per_image": 1000 * forward / batch, "evaluations_per_image": 1.0}]
    for spec in METRICS:
        metric = make_metric(spec)
        counter[0] = 0
        with torch.no_grad():
            metric.update(inputs)
        evaluations = counter[0] / batch
        with torch.no_grad():
            seconds = best_of(lambda: metric.update(inputs))
        label = spec if isinstance(spec, str) else ", ".join(f"{k}={v}" for k, v in spec.items())
        rows.append({"metric": label, "ms_per_image": 1000 * seconds / batch, "evaluations_per_image": evaluations,
                     "forward_ratio": seconds / forward})  # fmt: skip
        progress(f"(a) {label}: {1000 * seconds / batch:.2f} ms/image")
    return rows


def bench_pxap(count: int = 16, size: int = 224) -> dict[str, Any]:
    from torchmetrics.classification import BinaryAveragePrecision

    generator = torch.Generator().manual_seed(0)
    relevant = torch.rand(count, size, size, generator=generator) < 0.3
    scores = (relevant * 0.3 + torch.rand(count, size, size, generator=generator) * 0.7).clamp(0, 1)

    def ours() -> float:
        metric = PixelAveragePrecision(bins=100, normalise="none")
        metric.update(EvalInputs(images=scores, predicted=relevant, pixel_map=scores, mask=relevant))
        return metric.compute()["pxap"]

    def reference() -> float:
        metric = BinaryAveragePrecision(thresholds=101)
        metric.update(scores.flatten(), relevant.flatten().long())
        return float(metric.compute())

    value, expected = ours(), reference()
    result = {"pixels": count * size * size, "ours_ms": 1000 * best_of(ours),
              "torchmetrics_ms": 1000 * best_of(reference), "difference": abs(value - expected), "value": value}
    progress(f"(b) PxAP {result}")
    return result


def bench_quantus() -> list[dict[str, Any]]:
    try:
        import quantus
    except ImportError:
        progress("(c) quantus is not installed: skipped (make test installs it)")
        return []
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    maps = rng.random((64, 224, 224)).astype(np.float32)
    masks = rng.random((64, 224, 224)) < 0.3
    images = np.zeros((64, 3, 224, 224), np.float32)
    labels = np.zeros(64, int)
    rows = []
    segmentations = masks[:, None].astype(np.float32)
    for name, ours, reference in (
        ("pointing game", pointing_game, quantus.PointingGame(disable_warnings=True)),
        ("relevance mass", relevance_mass, quantus.RelevanceMassAccuracy(disable_warnings=True)),
    ):

        def mine() -> np.ndarray:
            return ours(torch.tensor(maps), torch.tensor(masks)).numpy()

        def theirs() -> np.ndarray:
            return np.array(reference(model=None, x_batch=images, y_batch=labels, a_batch=maps[:, None],
                                      s_batch=segmentations), dtype=np.float64)  # fmt: skip

        rows.append({"metric": name, "difference": float(np.abs(mine() - theirs()).max()),
                     "ours_ms": 1000 * best_of(mine), "quantus_ms": 1000 * best_of(theirs)})  # fmt: skip
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3)).eval()
    x = torch.rand(16, 3, 32, 32)
    x[:, :, 0, 0] = 0.0
    a = torch.rand(16, 32, 32)
    inputs = EvalInputs(images=x, predicted=torch.zeros(16, dtype=torch.long), model=model, pixel_map=a)
    metric = make_metric("rise", mode="deletion", steps=16, removal="black", features={"name": "grid", "grid": 4})
    with torch.no_grad():
        curves, _ = metric.run_curve(inputs)
    reference = quantus.RegionPerturbation(patch_size=8, regions_evaluation=16, perturb_baseline="black",
                                           normalise=False, disable_warnings=True)  # fmt: skip

    def theirs():
        return np.array(reference(model=model, x_batch=x.numpy(), y_batch=np.zeros(16, int), a_batch=a[:, None].numpy(),
                                  device="cpu"))  # fmt: skip

    def ours():
        with torch.no_grad():
            return metric.run_curve(inputs)

    rows.append({"metric": "region perturbation (RISE deletion on 8 px patches)",
                 "difference": float(np.abs((curves[:, :1] - curves[:, 1:]).numpy() - theirs()).max()),
                 "ours_ms": 1000 * best_of(ours), "quantus_ms": 1000 * best_of(theirs)})  # fmt: skip
    for row in rows:
        progress(f"(c) {row}")
    return rows


def markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        cells = [row.get(c, "") for c in columns]
        lines.append("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} thread(s)"
    results = {"machine": machine, "metrics": bench_metrics(), "pxap": bench_pxap(), "quantus": bench_quantus()}
    print(f"# Metric benchmark ({machine})\n")
    print("## (a) Metrics on 64 images of 64 px (test_resnet)\n")
    print(markdown(results["metrics"], ["metric", "ms_per_image", "evaluations_per_image", "forward_ratio"]))
    print("\n## (b) PxAP: streaming histogram vs torchmetrics BinaryAveragePrecision(thresholds=101)\n")
    print(markdown([results["pxap"]], ["pixels", "ours_ms", "torchmetrics_ms", "difference", "value"]))
    if results["quantus"]:
        print("\n## (c) Against Quantus 0.6 on shared inputs\n")
        print(markdown(results["quantus"], ["metric", "difference", "ours_ms", "quantus_ms"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
