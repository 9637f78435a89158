"""P2P speed and search cost, each as a ratio against a reference measured in the same run.

1. Training img/s of P2P (selector + masking + classifier, forward + backward + step) vs the classifier alone.
2. Inference img/s of the plain classifier vs P2P with the dynamic-tau search (hard masks).
3. Head + classifier evaluations per image: the search that re-runs only undecided images vs the plain grid
   search (every tau for every image), and bisection with its agreement rate with the grid search.

With ``--checkpoint`` a trained model is measured on the built-in test images of its experiment (meaningful
search costs); without, an untrained model of the demo config is used (speed only).

    python benchmarks/bench_p2p.py --checkpoint results/demo/run/model --images 256
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from p2pvision.models.p2p import P2PModel, load_p2p
from p2pvision.models.p2p.checkpoint import read_checkpoint_config
from p2pvision.regions.partition import make_partitioner
from p2pvision.train.data import build_stage
from p2pvision.train.experiment import experiment_from_dict, load_experiment


def timed(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--images", type=int, default=256, help="test images for the search measurements")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)

    if args.checkpoint:
        _, meta = read_checkpoint_config(args.checkpoint)
        experiment = experiment_from_dict(meta["experiment"])
        model = load_p2p(args.checkpoint, device=device)
    else:
        experiment = load_experiment("demo")
        model = P2PModel(experiment.p2p_config(10, [str(i) for i in range(10)])).to(device)
    data = build_stage(experiment.data, "test", make_partitioner(**model.config.partition), progress=False)
    count = min(args.images, len(data))
    samples = [data[i] for i in range(count)]
    images = torch.stack([s["image"] for s in samples]).to(device)
    regions = torch.stack([s["regions"] for s in samples]).to(device)
    labels = torch.tensor([s["label"] for s in samples], device=device)
    batch = slice(0, args.batch_size)
    figures: dict[str, float] = {}

    # 1. Training throughput.
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), 1e-4)

    def p2p_step() -> None:
        output = model(images[batch], regions[batch], temperature=0.5)
        loss = model.loss(output, labels[batch], 1.0)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    classifier_optimiser = torch.optim.Adam(model.classifier.parameters(), 1e-4)

    def classifier_step() -> None:
        loss = torch.nn.functional.cross_entropy(model.classifier(images[batch]), labels[batch])
        classifier_optimiser.zero_grad()
        loss.backward()
        classifier_optimiser.step()

    size = len(images[batch])
    figures["train_img_s_p2p"] = size / timed(p2p_step, args.repeats)
    figures["train_img_s_classifier"] = size / timed(classifier_step, args.repeats)

    # 2. Inference throughput (hard masks, dynamic tau) vs the plain classifier.
    model.eval()
    with torch.no_grad():
        figures["infer_img_s_classifier"] = size / timed(lambda: model.classifier(images[batch]), args.repeats)
    figures["infer_img_s_p2p_dynamic"] = size / timed(
        lambda: model.search_tau(images[batch], regions[batch]), args.repeats
    )

    # 3. Evaluations per image: undecided-only grid search, plain grid, bisection.
    grid = model.search_tau(images, regions)
    bisection = model.search_tau(images, regions, method="bisection")
    figures["evals_per_image_search"] = float(grid.evaluations.float().mean())
    figures["evals_per_image_plain_grid"] = float(len(model.config.tau_grid))
    figures["evals_per_image_bisection"] = float(bisection.evaluations.float().mean())
    figures["bisection_agreement"] = float((bisection.tau == grid.tau).float().mean())
    figures["images"] = count

    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {size}")
    print("| measurement | P2P | reference | ratio |")
    print("|---|---:|---:|---:|")
    rows = [
        ("training img/s (P2P vs classifier alone)", "train_img_s_p2p", "train_img_s_classifier"),
        ("inference img/s (P2P dynamic tau vs plain classifier)", "infer_img_s_p2p_dynamic", "infer_img_s_classifier"),
        ("evaluations / image (search vs plain grid)", "evals_per_image_search", "evals_per_image_plain_grid"),
        ("evaluations / image (bisection vs plain grid)", "evals_per_image_bisection", "evals_per_image_plain_grid"),
    ]
    for title, ours, reference in rows:
        print(
            f"| {title} | {figures[ours]:.1f} | {figures[reference]:.1f} | {figures[ours] / figures[reference]:.3f} |"
        )
    print(f"bisection picks the grid search's tau for {figures['bisection_agreement']:.1%} of {count} images")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)


if __name__ == "__main__":
    main()
