"""P2P speed and search cost, each as a ratio against a reference measured in the same run.

1. Inference, timed as a user calls it (and, apart, where its time goes: superpixels, selector backbone, one
   classifier pass on masked images, the search): ``model.explain(images)`` (regions computed inside) with each tau
   search method, against one plain forward pass of the model's classifier on the same images, over all
   ``--images`` test images in batches of ``--batch-size`` (one batch is no fair sample: the searches' cost
   depends on how many of its images walk; the first 64 demo test images need a third more passes than the
   average). The model is the untouched checkpoint (nothing below trains it before); the arms alternate within
   each of ``--rounds`` rounds (order rotated every round); min and median over rounds, /proc/loadavg before and
   after.
2. Search cost and agreement on the test images: classifier passes per image of each search method,
   the share of images where it picks the same tau (and the same class) as ``method="grid"``, the exhaustive
   reference, and the accuracy; and how often that grid search (cached head, unchanged masks skipped) picks the tau
   of the straightforward grid (full-resolution head at every tau for every image).
3. Training throughput of P2P (selector + masking + classifier, forward + backward + step) against the classifier
   alone, on a copy of the model (the checkpoint itself is never updated).

With ``--checkpoint`` a trained model is measured on the built-in test images of its experiment (meaningful search
costs); without, an untrained model of the demo config. ``--sizes`` adds image sizes: at a size other than the
model's, an untrained model of the same settings at that size is timed on one batch of resized test images (speed
only: an untrained model is rarely certain, so its search walks the whole grid).

    python benchmarks/bench_p2p.py --checkpoint results/demo/run/model --images 256 --sizes 64 128 224
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from timing import allocator_setting, load_average, steady_allocator

from p2pvision.models.p2p import P2PModel, load_p2p
from p2pvision.models.p2p.checkpoint import read_checkpoint_config
from p2pvision.regions.partition import make_partitioner, partition_batch
from p2pvision.train.data import build_stage
from p2pvision.train.experiment import experiment_from_dict, load_experiment

METHODS = ("endpoints", "grid", "bisection")
T = TypeVar("T")


def interleaved(arms: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each arm per round; arms alternate within a round, their order rotated every round."""
    names = list(arms)
    for name in names:  # warm-up
        arms[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            started = time.perf_counter()
            arms[name]()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def over(batches: Sequence[T], call: Callable[[T], object]) -> Callable[[], None]:
    """An arm that runs ``call`` on every batch in turn."""

    def arm() -> None:
        for batch in batches:
            call(batch)

    return arm


def explain_with(model: P2PModel, delta: float, method: str) -> Callable[[torch.Tensor], object]:
    """``model.explain`` at certainty ``delta`` with the search ``method``, regions computed inside."""
    return lambda images: model.explain(images, delta=delta, method=method)


def inference_table(model: P2PModel, batches: list[torch.Tensor], rounds: int, label: str, delta: float) -> None:
    """Print explain at certainty ``delta`` (per search method) vs one plain classifier forward, each over all
    ``batches``, interleaved."""
    model.eval()
    arms: dict[str, Callable[[], object]] = {"plain classifier forward": over(batches, model.classifier)}
    for method in METHODS:
        arms[f"explain, {method} search"] = over(batches, explain_with(model, delta, method))
    loads = [load_average()]
    with torch.no_grad():
        seconds = interleaved(arms, rounds)
    loads.append(load_average())
    reference = statistics.median(seconds["plain classifier forward"])
    count, size = sum(len(batch) for batch in batches), batches[0].shape[-1]
    print(f"\n{label}: delta {delta}, {count} images in batches of {len(batches[0])} at {size} px, {rounds} "
          f"rounds, load {loads[0]:.2f} -> {loads[1]:.2f}")  # fmt: skip
    print_ratios(seconds, reference, "plain forward")


def print_ratios(seconds: dict[str, list[float]], reference: float, unit: str) -> None:
    """A Markdown table of each arm's min and median milliseconds and its median over ``reference`` seconds."""
    print(f"| arm | min ms | median ms | median / {unit} |")
    print("|---|---:|---:|---:|")
    for name, values in seconds.items():
        print(f"| {name} | {1e3 * min(values):.1f} | {1e3 * statistics.median(values):.1f} | "
              f"{statistics.median(values) / reference:.2f} |")  # fmt: skip


def parts_table(model: P2PModel, batches: list[tuple[torch.Tensor, torch.Tensor]], rounds: int, delta: float) -> None:
    """Where explain's time goes, each part over one plain classifier forward of the same (images, regions)
    batches, interleaved: the superpixels, the selector backbone, one classifier pass on masked images (a random
    half of the regions kept) and the whole search (regions given). A search that knew each image's answer still
    pays the first three."""
    model.eval()
    partitioner = make_partitioner(**model.config.partition)
    generator = torch.Generator().manual_seed(0)
    # bool masks, as the search passes them (the fill then selects pixels instead of blending)
    masks = [(torch.rand(len(x), 1, model.config.max_regions, generator=generator) > 0.5).to(x.device)
             for x, _ in batches]  # fmt: skip
    images = [x for x, _ in batches]
    masked = [(x, r, m) for (x, r), m in zip(batches, masks)]
    arms: dict[str, Callable[[], object]] = {
        "plain classifier forward": over(images, model.classifier),
        "superpixels": over(images, lambda x: partition_batch(x, partitioner)),
        "selector backbone": over(images, model.selector.features),
        "one classifier pass on masked images": over(masked, lambda xrm: model.classify_regions(*xrm)),
        "search (regions given)": over(batches, lambda xr: model.search_tau(*xr, delta=delta)),
    }  # fmt: skip
    with torch.no_grad():
        seconds = interleaved(arms, rounds)
    reference = statistics.median(seconds["plain classifier forward"])
    count = sum(len(x) for x, _ in batches)
    print(f"\nwhere explain's time goes: delta {delta}, {count} images in batches of {len(batches[0][0])}, "
          f"{rounds} rounds, load {load_average():.2f}")  # fmt: skip
    print_ratios(seconds, reference, "plain forward")


def plain_grid_tau(model: P2PModel, images: torch.Tensor, regions: torch.Tensor, delta: float) -> torch.Tensor:
    """The spec's answer computed the straightforward way: every image at every grid tau with the full-resolution
    head (``classify_at``), then the smallest delta-certain tau (the largest where none is)."""
    grid = torch.tensor(model.config.tau_grid)
    with torch.no_grad():
        features = model.selector.features(images)
        certain = torch.stack([
            model.classify_at(features, images, regions, torch.full((len(images),), float(tau)))[0].softmax(-1).amax(-1)
            >= delta for tau in grid.tolist()], 1).cpu()  # fmt: skip
    first = torch.where(certain.any(1), certain.float().argmax(1), torch.tensor(len(grid) - 1))
    return grid[first]


def search_table(model: P2PModel, images: torch.Tensor, regions: torch.Tensor, labels: torch.Tensor,
                 batch_size: int, delta: float) -> dict[str, float]:  # fmt: skip
    """Classifier passes per image, agreement with the grid search and accuracy, for every search method."""
    model.eval()
    results = {method: [] for method in METHODS}
    plain = []
    for start in range(0, len(images), batch_size):
        part = slice(start, start + batch_size)
        for method in METHODS:
            results[method].append(model.explain(images[part], regions=regions[part], delta=delta,
                                                 method=method).cpu())  # fmt: skip
        plain.append(plain_grid_tau(model, images[part], regions[part], delta))
    reference_tau = torch.cat([result.extras["tau"] for result in results["grid"]])
    reference_class = torch.cat([result.predicted for result in results["grid"]])
    same_as_plain = float((reference_tau == torch.cat(plain)).float().mean())
    figures: dict[str, float] = {"grid_same_tau_as_full_head_grid": same_as_plain}
    print(f"\nsearch on {len(images)} test images (delta {delta}); the grid search picks the same tau "
          f"as the full-resolution-head grid for {same_as_plain:.1%} of them")  # fmt: skip
    print("| search | classifier passes / image | same tau as grid | same class as grid | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for method, parts in results.items():
        tau = torch.cat([result.extras["tau"] for result in parts])
        predicted = torch.cat([result.predicted for result in parts])
        evaluations = float(torch.cat([result.evaluations for result in parts]).mean())
        same_tau, same_class = float((tau == reference_tau).float().mean()), float(
            (predicted == reference_class).float().mean())  # fmt: skip
        accuracy = float((predicted == labels.cpu()).float().mean())
        figures.update({f"evals_{method}": evaluations, f"agreement_{method}": same_tau,
                        f"accuracy_{method}": accuracy, "delta": delta})  # fmt: skip
        print(f"| {method} | {evaluations:.2f} | {same_tau:.1%} | {same_class:.1%} | {accuracy:.3f} |")
    return figures


def training_table(model: P2PModel, images: torch.Tensor, regions: torch.Tensor, labels: torch.Tensor,
                   rounds: int) -> None:  # fmt: skip
    """P2P training steps vs classifier-alone steps on a copy of ``model``, interleaved."""
    trained = copy.deepcopy(model).train()
    optimiser = torch.optim.Adam(trained.parameters(), 1e-4)
    classifier_optimiser = torch.optim.Adam(trained.classifier.parameters(), 1e-4)

    def p2p_step() -> None:
        loss = trained.loss(trained(images, regions, temperature=0.5), labels, 1.0)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    def classifier_step() -> None:
        loss = F.cross_entropy(trained.classifier(images), labels)
        classifier_optimiser.zero_grad()
        loss.backward()
        classifier_optimiser.step()

    seconds = interleaved({"P2P step": p2p_step, "classifier step": classifier_step}, rounds)
    reference = statistics.median(seconds["classifier step"])
    print(f"\ntraining on a copy of the model, batch {len(images)}, {rounds} rounds, load {load_average():.2f}")
    print_ratios(seconds, reference, "classifier step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--images", type=int, default=256, help="test images for the search measurements")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delta", type=float, nargs="+", default=[0.99, 0.9], help="certainties (default: 0.99 0.9)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="further image sizes to time (px)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the search figures to this JSON file")
    args = parser.parse_args()
    steady_allocator()
    device = torch.device(args.device)

    if args.checkpoint:
        _, meta = read_checkpoint_config(args.checkpoint)
        experiment = experiment_from_dict(meta["experiment"])
        model = load_p2p(args.checkpoint, device=device)
    else:
        experiment = load_experiment("demo")
        model = P2PModel(experiment.p2p_config(10, [str(i) for i in range(10)])).to(device)
    model.eval()
    data = build_stage(experiment.data, "test", make_partitioner(**model.config.partition), progress=False)
    count = min(args.images, len(data))
    samples = [data[i] for i in range(count)]
    images = torch.stack([s["image"] for s in samples]).to(device)
    regions = torch.stack([s["regions"] for s in samples]).to(device)
    labels = torch.tensor([s["label"] for s in samples], device=device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {allocator_setting()}, "
          f"model {'checkpoint ' + args.checkpoint if args.checkpoint else 'untrained (demo config)'}")  # fmt: skip

    batches = list(zip(images.split(args.batch_size), regions.split(args.batch_size)))
    batch = images[: args.batch_size]
    figures = []
    for delta in args.delta:
        inference_table(model, [x for x, _ in batches], args.rounds, f"{model.config.image_size} px (the model's)",
                        delta)  # fmt: skip
        parts_table(model, batches, args.rounds, delta)
        figures.append(search_table(model, images, regions, labels, args.batch_size, delta))
    for size in args.sizes:
        if size == model.config.image_size:
            continue
        torch.manual_seed(0)  # the same untrained model in every run
        other = P2PModel(dataclasses.replace(model.config, image_size=size, classifier_weights=None,
                                             selector_weights=None)).to(device)  # fmt: skip
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        for delta in args.delta:
            inference_table(other, [resized], args.rounds, f"{size} px (untrained model of the same settings)", delta)
    training_table(model, batch, regions[: args.batch_size], labels[: args.batch_size], args.rounds)
    if args.json:
        Path(args.json).write_text(json.dumps({"searches": figures, "images": count}, indent=2))


if __name__ == "__main__":
    main()
