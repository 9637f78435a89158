"""Cost and quality of the region game and the post-hoc explainers on the offline EfficientNet-Lite0 (224 px).

(a) Region game throughput: model evaluations per second through ``RegionGame`` (random coalitions of a 14x14
    grid, batch 64) against the plain batched forward pass of the same model on the same machine, measured
    alternately in the same run (target ratio >= 0.8), per fill for the cheap fills.
(b) MoXI evaluations per image: measured for a full order (no early stop) and with early stop, against the
    reference implementation's |N|^2 (every player evaluated at every step) and the |N|(|N|+1)/2 minimum.
(c) Seconds per image for each perturbation explainer with each fill at reduced settings (stated in the table),
    with the fill's share of the time and the seconds per model evaluation; Grad-CAM(++) once. MoXI's cost is
    in (b) and (d): its evaluations depend on where early stopping ends.
(e) Overhead: for each perturbation explainer at 224 px (one photo, settings in the table), its time as a user
    calls ``explain`` (partition included) over (its evaluations x one plain forward per image at batch 64, the
    explainers' batch size). The reference is measured next to each arm: one plain pass runs between consecutive
    arms (and before the first and after the last), and each arm's reference is the faster of the passes right
    before and right after it, so that a machine slowed or sped up by other jobs moves both sides of the ratio.
    Meaningful perturbation's evaluation is a forward+backward pass, so its reference is ``steps`` consecutive
    forward+backward passes of the same batch with respect to the input (as its probe times them), the faster of
    the runs right before and right after it, + one plain forward: like for like, as the arm's own passes are a run
    of ``steps``, not the fastest of several (the JSON also gives the ratio over steps x the fastest single pass).
    Grad-CAM against Captum's ``LayerGradCam`` on the same layer (the final feature map, ``bn2``), model, batch and
    targets, its map upsampled with ``LayerAttribution.interpolate``; weights trainable and frozen; each the fastest
    of 3 runs, ours and Captum's alternately (which goes first alternates between rounds). The arms run interleaved
    in every round; min and median over the rounds and the 1-minute load average (/proc/loadavg) at each round (and,
    in the JSON, at each arm, with the arm's mean images per forward pass: on CPU a pass of 64 costs more per image
    than a smaller one) are reported.
(d) Acceptance: on the bundled photos (scikit-image astronaut, chelsea, coffee, rocket; scikit-learn china) at
    224 px on a 14x14 grid with the mean-colour fill (zero after normalisation), how many visible patches each
    method's insertion order needs before the model's own top-1 class returns. Attention rollout runs on a
    ViT-Tiny/16 with random weights (token dropping) as a smoke test only.

Prints Markdown tables; ``--json PATH`` also writes the numbers. Usage:
    python benchmarks/bench_explainers.py [--quick] [--permutations 4] [--json results/bench_explainers.json]
    python benchmarks/bench_explainers.py --overhead-only [--rounds 3]    # (e) alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_image
from timing import allocator_setting, load_average, steady_allocator

from p2pvision.explain import (
    LIME,
    RISE,
    AttentionRollout,
    GradCAM,
    GradCAMPlusPlus,
    KernelSHAP,
    MeaningfulPerturbation,
    MoXI,
    MoXIMinus,
    ShapleySampling,
    SlidingPatch,
)
from p2pvision.game import RegionGame
from p2pvision.models.backbones import create_classifier
from p2pvision.regions import GridPartitioner, partition_batch
from p2pvision.removal import TokenDropping, make_removal


def progress(message: str) -> None:
    """Progress on stderr, so that stdout stays the Markdown report."""
    print(message, file=sys.stderr, flush=True)


FILLS = ("black", "mean", "grey", "region_mean", "blur", "noise", "telea", "ns", "biharmonic")


def bundled_photos(model: torch.nn.Module) -> tuple[list[str], torch.Tensor]:
    """The bundled photos preprocessed for ``model`` (resize + centre crop): names and (N,3,H,W)."""
    arrays = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket")}
    arrays["china"] = load_sample_image("china.jpg")
    images = [model.preprocess(Image.fromarray(array)) for array in arrays.values()]
    return list(arrays), torch.stack(images)


def bench_throughput(model: torch.nn.Module, images: torch.Tensor, count: int, repeats: int) -> list[dict[str, Any]]:
    """Game evaluations/s vs plain forward images/s, measured alternately; one row per fill."""
    batch = images[torch.arange(count) % len(images)]
    regions = partition_batch(images[:1], GridPartitioner(14))
    generator = torch.Generator().manual_seed(0)
    rows = []
    for fill in ("black", "mean", "blur", "telea"):
        progress(f"(a) throughput with the {fill} fill")
        removal = make_removal(fill, model=model)
        plain, game_rates, shares = [], [], []
        for _ in range(repeats):
            with torch.no_grad():
                start = time.perf_counter()
                for chunk in batch.split(64):
                    model(chunk)
                plain.append(count / (time.perf_counter() - start))
            game = RegionGame(model, images[:1], regions, removal, target=0, batch_size=64)
            coalitions = torch.rand(1, count, 196, generator=generator) < 0.5
            start = time.perf_counter()
            game(coalitions)
            elapsed = time.perf_counter() - start
            game_rates.append(game.evaluations / elapsed)
            shares.append(game.removal_seconds / elapsed)
        plain_rate, game_rate = statistics.median(plain), statistics.median(game_rates)
        rows.append({
            "fill": fill, "plain_img_per_s": plain_rate, "game_eval_per_s": game_rate,
            "ratio": game_rate / plain_rate, "fill_share": statistics.median(shares),
        })  # fmt: skip
    return rows


def patches_needed(game: RegionGame, order: torch.Tensor, chunk: int = 16) -> list[int]:
    """For each image, the smallest k such that the first k players of ``order`` give the target as top-1."""
    counts = []
    for b in range(game.num_images):
        ranked = [int(p) for p in order[b] if p >= 0]
        found = -1
        for start in range(0, len(ranked), chunk):
            ks = range(start + 1, min(start + chunk, len(ranked)) + 1)
            coalitions = torch.zeros(game.num_images, len(ks), game.num_players, dtype=torch.bool)
            for i, k in enumerate(ks):
                coalitions[b, i, ranked[:k]] = True
            valid = torch.zeros(game.num_images, len(ks), dtype=torch.bool)
            valid[b] = True
            _, predictions = game.evaluate(coalitions, valid)
            hits = (predictions[b] == game.target[b]).nonzero()
            if len(hits):
                found = list(ks)[int(hits[0])]
                break
        counts.append(found)
    return counts


def bench_moxi_cost(model: torch.nn.Module, images: torch.Tensor, grid: int) -> dict[str, Any]:
    """Evaluations of a full MoXI insertion order on a grid x grid partition (one image)."""
    progress(f"(b) MoXI full order on a {grid}x{grid} grid")
    players = grid * grid
    explainer = MoXI(model, "mean", GridPartitioner(grid), early_stop=False)
    result = explainer.explain(images[:1])
    return {
        "grid": f"{grid}x{grid}", "players": players, "reference_n2": players * players,
        "minimum": players * (players + 1) // 2, "measured": result.cost.evaluations - 1,  # minus the target pass
        "seconds": result.cost.seconds,
    }  # fmt: skip


def reduced_explainers(model: torch.nn.Module, removal: Any) -> dict[str, tuple[Any, str]]:
    """Perturbation explainers at reduced settings for the per-fill timing, with a description of each."""
    grid7 = GridPartitioner(7)
    return {
        "MoXI(-)": (MoXIMinus(model, removal, grid7), "7x7 grid"),
        "Shapley sampling": (ShapleySampling(model, removal, grid7, num_permutations=1), "7x7, 1 permutation"),
        "KernelSHAP": (KernelSHAP(model, removal, grid7, num_samples=64), "7x7, 64 samples"),
        "LIME": (LIME(model, removal, num_samples=64), "SLIC 50, 64 samples"),
        "SP": (SlidingPatch(model, removal, grid7, patch=56, stride=56), "56 px windows, stride 56"),
        "MP": (MeaningfulPerturbation(model, removal, grid7, steps=10), "10 steps"),
    }


def bench_explainer_fills(model: torch.nn.Module, image: torch.Tensor, fills: tuple[str, ...]) -> list[dict[str, Any]]:
    """Seconds per image, evaluations and the fill's share for every reduced explainer and fill."""
    rows = []
    for fill in fills:
        removal = make_removal(fill, model=model)
        for method, (explainer, setting) in reduced_explainers(model, removal).items():
            progress(f"(c) {method} with the {fill} fill")
            result = explainer.explain(image)
            cost = result.cost
            rows.append({
                "method": method, "setting": setting, "fill": fill, "seconds": cost.seconds,
                "evaluations": cost.evaluations, "fill_share": cost.removal_seconds / cost.seconds,
                "seconds_per_evaluation": cost.seconds / cost.evaluations,
            })  # fmt: skip
    for explainer in (GradCAM(model), GradCAMPlusPlus(model)):
        result = explainer.explain(image)
        rows.append({
            "method": explainer.name, "setting": "forward_features", "fill": "-", "seconds": result.cost.seconds,
            "evaluations": result.cost.evaluations, "fill_share": 0.0,
            "seconds_per_evaluation": result.cost.seconds / result.cost.evaluations,
        })  # fmt: skip
    return rows


def bench_acceptance(model: torch.nn.Module, names: list[str], images: torch.Tensor, permutations: int) -> dict:
    """Patches needed before the top-1 class returns, per method and photo (14x14 grid, mean fill)."""
    grid = GridPartitioner(14)
    regions = partition_batch(images, grid)
    removal = make_removal("mean", model=model)
    methods = {
        "MoXI": MoXI(model, removal, grid, early_stop=True),
        "MoXI(-)": MoXIMinus(model, removal, grid),
        f"Shapley sampling ({permutations} perm.)": ShapleySampling(
            model, removal, grid, num_permutations=permutations
        ),
        "Grad-CAM": GradCAM(model, partitioner=grid),
        "Grad-CAM++": GradCAMPlusPlus(model, partitioner=grid),
    }
    table: dict[str, Any] = {}
    for method, explainer in methods.items():
        progress(f"(d) {method} on {len(images)} photos")
        result = explainer.explain(images, regions=regions)
        game = RegionGame(model, images, regions, removal, target=result.target)
        counts = patches_needed(game, result.order)
        table[method] = {
            "patches_needed": dict(zip(names, counts)),
            "evaluations_per_image": result.cost.evaluations / len(images),
            "seconds_per_image": result.cost.seconds / len(images),
        }
        if method == "MoXI":
            table[method]["own_count"] = dict(zip(names, result.extra["count"].tolist()))
    table["targets"] = dict(zip(names, (model.class_names[int(t)] for t in result.target)))
    return table


def overhead_explainers(model: torch.nn.Module) -> dict[str, tuple[Any, str]]:
    """The perturbation explainers of (e), at settings of 50-200 evaluations per image, with a description."""
    grid7 = GridPartitioner(7)
    return {
        "MoXI(-)": (MoXIMinus(model, "mean", GridPartitioner(14)), "14x14 grid"),
        "MoXI": (MoXI(model, "mean", GridPartitioner(4), early_stop=False), "4x4 grid, full order"),
        "sliding patch": (SlidingPatch(model, "mean", grid7, patch=56, stride=24), "56 px windows, stride 24"),
        "LIME": (LIME(model, "mean", num_samples=100), "SLIC 50, 100 samples"),
        "RISE": (RISE(model, "mean", num_masks=100), "100 masks"),
        "Shapley sampling": (ShapleySampling(model, "mean", grid7, num_permutations=2), "7x7, 2 permutations"),
        "KernelSHAP": (KernelSHAP(model, "mean", grid7, num_samples=100), "7x7, 100 samples"),
        "meaningful perturbation": (MeaningfulPerturbation(model, None, grid7, steps=10), "10 steps, blur"),
    }


def _plain_forward(model: torch.nn.Module, image: torch.Tensor, batch: int = 64) -> float:
    """Seconds per image of one plain batched forward pass (``batch`` copies of ``image``)."""
    copies = image.expand(batch, -1, -1, -1).clone()
    with torch.no_grad():
        started = time.perf_counter()
        model(copies)
        return (time.perf_counter() - started) / batch


def _forward_backward(model: torch.nn.Module, images: torch.Tensor, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` consecutive forward+backward passes of ``images`` with respect to the input (no
    weight gradients), as the explainers' probe times one."""
    seconds = []
    for _ in range(repeats):
        inputs = images.clone().requires_grad_(True)
        started = time.perf_counter()
        torch.autograd.grad(model(inputs).amax(dim=1).sum(), inputs)
        seconds.append(time.perf_counter() - started)
    return seconds


def _captum_grad_cam(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Captum's Grad-CAM on EfficientNet's final feature map, upsampled to the images (B,H,W)."""
    maps = LayerGradCam(model, model.model.bn2).attribute(images, target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(maps, tuple(images.shape[2:]), "bilinear").squeeze(1).detach()


def _set_frozen(model: torch.nn.Module, frozen: bool) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(not frozen)


def _grad_cam_race(
    model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, frozen: bool, first: str, repeats: int
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Our Grad-CAM and Captum's, alternately ``repeats`` times each (``first`` starts): the fastest time and the
    map of each."""
    _set_frozen(model, frozen)
    try:
        runs = {"ours": lambda: GradCAM(model).explain(images, targets).pixel_map,
                "captum": lambda: _captum_grad_cam(model, images, targets)}  # fmt: skip
        order = [first, *(arm for arm in runs if arm != first)]
        times: dict[str, list[float]] = {arm: [] for arm in runs}
        maps = {}
        for _ in range(repeats):
            for arm in order:
                started = time.perf_counter()
                maps[arm] = runs[arm]()
                times[arm].append(time.perf_counter() - started)
    finally:
        _set_frozen(model, False)
    return {arm: min(values) for arm, values in times.items()}, maps


def bench_overhead(model: torch.nn.Module, images: torch.Tensor, rounds: int, cam_batch: int) -> dict[str, Any]:
    """(e): per round, every arm once (interleaved), each against a reference measured next to it: the fastest of
    the plain forward passes right before and right after it (one pass between consecutive arms)."""
    image = images[1:2]
    explainers = overhead_explainers(model)
    cam_images = images[torch.arange(cam_batch) % len(images)]
    with torch.no_grad():
        cam_targets = model(cam_images).argmax(dim=1)
    ratios: dict[str, list[float]] = {name: [] for name in [*explainers, "Grad-CAM", "Grad-CAM (frozen)"]}
    evaluations: dict[str, float] = {}
    seconds: dict[str, list[float]] = {name: [] for name in ratios}
    references: dict[str, list[float]] = {name: [] for name in explainers}
    arm_loads: dict[str, list[float]] = {name: [] for name in ratios}
    passes: dict[str, list[float]] = {name: [] for name in explainers}
    plain, loads, differences, fastest_pass_ratios = [], [], [], []
    for round_ in range(rounds):
        loads.append(load_average())
        before = _plain_forward(model, image)
        plain.append(before)
        for name, (explainer, _) in explainers.items():
            arm_loads[name].append(load_average())
            progress(f"(e) round {round_ + 1}/{rounds}: {name} (load {arm_loads[name][-1]:.1f})")
            steps = explainer.steps if isinstance(explainer, MeaningfulPerturbation) else 0
            runs = [_forward_backward(model, image, steps)] if steps else []  # the run right before the arm
            sizes: list[int] = []  # the images of each forward pass, for the mean pass size
            hook = model.register_forward_pre_hook(lambda _module, args: sizes.append(len(args[0])))
            try:
                result = explainer.explain(image)
            finally:
                hook.remove()
            passes[name].append(statistics.mean(sizes))
            if steps:
                runs.append(_forward_backward(model, image, steps))  # and right after it
            after = _plain_forward(model, image)
            plain.append(after)
            forward, before = min(before, after), after
            evaluations[name] = float(result.evaluations[0])
            # meaningful perturbation: a run of steps forward+backward passes of one image and one plain forward
            reference = min(map(sum, runs)) + forward if steps else evaluations[name] * forward
            if steps:
                fastest_pass_ratios.append(result.seconds / (steps * min(min(run) for run in runs) + forward))
            references[name].append(reference)
            seconds[name].append(result.seconds)
            ratios[name].append(result.seconds / reference)
        for frozen in (False, True):
            name = "Grad-CAM (frozen)" if frozen else "Grad-CAM"
            arm_loads[name].append(load_average())
            progress(f"(e) round {round_ + 1}/{rounds}: {name} and Captum's LayerGradCam")
            first = "ours" if round_ % 2 == 0 else "captum"  # alternate which arm goes first
            times, maps = _grad_cam_race(model, cam_images, cam_targets, frozen, first, repeats=3)
            seconds[name].append(times["ours"])
            ratios[name].append(times["ours"] / times["captum"])
            scale = float(maps["captum"].abs().max())
            differences.append(float((maps["ours"] - maps["captum"]).abs().max()) / scale)
    rows = []
    for name, values in ratios.items():
        setting = explainers[name][1] if name in explainers else f"batch {cam_batch}, bn2"
        rows.append({
            "method": name, "setting": setting, "evaluations": evaluations.get(name, 1.0),
            "seconds_median": statistics.median(seconds[name]),
            "ratio_min": min(values), "ratio_median": statistics.median(values), "ratios": values,
            "seconds": seconds[name], "reference_seconds": references.get(name, []), "load": arm_loads[name],
            "mean_pass_images": statistics.mean(passes[name]) if passes.get(name) else None,
        })  # fmt: skip
    return {
        "rows": rows, "rounds": rounds, "plain_seconds_per_image": plain, "load": loads,
        "grad_cam_max_relative_difference": max(differences), "mp_fastest_pass_ratios": fastest_pass_ratios,
    }  # fmt: skip


def bench_rollout_smoke(images: torch.Tensor) -> dict[str, Any]:
    """Rollout on a random-weight ViT-Tiny/16 with token dropping: runs and gives a patch count."""
    progress("(d) rollout smoke test on a random ViT-Tiny")
    torch.manual_seed(0)
    vit = create_classifier("vit_tiny_patch16_224").eval()
    grid = GridPartitioner(14)
    regions = partition_batch(images, grid)
    result = AttentionRollout(vit, partitioner=grid).explain(images, regions=regions)
    game = RegionGame(vit, images, regions, TokenDropping(), target=result.target)
    return {
        "patches_needed": patches_needed(game, result.order),
        "seconds_per_image": result.cost.seconds / len(images),
    }


def overhead_markdown(overhead: dict[str, Any]) -> str:
    """The table of (e)."""
    plain = overhead["plain_seconds_per_image"]
    lines = [f"### (e) Time over (evaluations x one plain batched forward) at 224 px, {overhead['rounds']} rounds "
             "interleaved", "",
             f"Plain forward (batch 64): {min(plain):.3f}-{max(plain):.3f} s per image over the passes; each arm's "
             "reference is the fastest of the passes right before and right after it. Load average at the rounds: "
             + ", ".join(f"{load:.1f}" for load in overhead["load"]) + " (2 cores are fully used at 2.0).", "",
             "| method (setting) | evaluations/image | median seconds | ratio min | ratio median |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in overhead["rows"]:
        what = "ours / Captum" if row["method"].startswith("Grad-CAM") else f"{row['evaluations']:.0f}"
        lines.append(f"| {row['method']} ({row['setting']}) | {what} | {row['seconds_median']:.2f} | "
                     f"{row['ratio_min']:.2f} | {row['ratio_median']:.2f} |")  # fmt: skip
    lines += ["", "Meaningful perturbation: reference = a run of `steps` forward+backward passes of the same batch "
              "(w.r.t. the input; the faster of the runs right before and right after it) + one plain forward; over "
              "steps x the fastest single pass of those runs instead, its ratio is "
              + ", ".join(f"{ratio:.2f}" for ratio in overhead["mp_fastest_pass_ratios"]) + " by round. Grad-CAM "
              "rows: fastest time of 3 over Captum's LayerGradCam's fastest of 3 (run alternately) on the same model, "
              "batch, layer and targets; largest map difference relative to Captum's largest value: "
              f"{overhead['grad_cam_max_relative_difference']:.1e}."]  # fmt: skip
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    lines = ["### (a) Region game throughput vs plain batched forward (EfficientNet-Lite0, 224 px, batch 64)", "",
             "| fill | plain forward img/s | game evaluations/s | ratio | fill share |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in results["throughput"]:
        lines.append(f"| {row['fill']} | {row['plain_img_per_s']:.1f} | {row['game_eval_per_s']:.1f} | "
                     f"{row['ratio']:.2f} | {row['fill_share']:.1%} |")  # fmt: skip
    lines += ["", "### (b) MoXI evaluations per image (insertion)", "",
              "| grid | players N | reference N² | minimum N(N+1)/2 | measured (full order) | seconds |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in results["moxi_cost"]:
        lines.append(f"| {row['grid']} | {row['players']} | {row['reference_n2']} | {row['minimum']} | "
                     f"{row['measured']} | {row['seconds']:.1f} |")  # fmt: skip
    moxi = results["acceptance"]["MoXI"]
    lines.append(f"| 14x14, early stop | 196 | 38416 | 19306 | {moxi['evaluations_per_image']:.0f} (mean of photos) | "
                 f"{moxi['seconds_per_image']:.1f} |")  # fmt: skip
    lines += ["", "### (c) Seconds per image per explainer and fill (reduced settings; fill share of the time)", ""]
    fills = list(dict.fromkeys(r["fill"] for r in results["explainer_fills"] if r["fill"] != "-"))
    lines += ["| method (setting) | evaluations | " + " | ".join(fills) + " |", "|---|---|" + "---|" * len(fills)]
    methods = list(dict.fromkeys(r["method"] for r in results["explainer_fills"]))
    for method in methods:
        rows = [r for r in results["explainer_fills"] if r["method"] == method]
        cells = {r["fill"]: f"{r['seconds']:.2f} s ({r['fill_share']:.0%})" for r in rows}
        line = f"| {method} ({rows[0]['setting']}) | {rows[0]['evaluations']} | "
        line += " | ".join(cells.get(fill, cells.get("-", "")) for fill in fills) + " |"
        lines.append(line)
    acceptance = results["acceptance"]
    names = list(acceptance["targets"])
    lines += ["", "### (d) Visible patches (of 196) needed before the model's own top-1 class returns", "",
              "| method | " + " | ".join(f"{n} ({acceptance['targets'][n]})" for n in names)
              + " | mean | evaluations/img | s/img |", "|---|" + "---|" * (len(names) + 3)]  # fmt: skip
    for method, row in acceptance.items():
        if method == "targets":
            continue
        counts = [row["patches_needed"][n] for n in names]
        lines.append(f"| {method} | " + " | ".join(str(c) for c in counts) + f" | {np.mean(counts):.1f} | "
                     f"{row['evaluations_per_image']:.0f} | {row['seconds_per_image']:.1f} |")  # fmt: skip
    smoke = results["rollout_smoke"]
    lines.append("| rollout (random ViT-Tiny, token dropping; smoke test) | "
                 + " | ".join(str(c) for c in smoke["patches_needed"]) + " | - | 1 | "
                 f"{smoke['seconds_per_image']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that the script runs")
    parser.add_argument("--permutations", type=int, default=4, help="Shapley permutations in (d) (default: 4)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (e) (default: 3)")
    parser.add_argument("--overhead-only", action="store_true", help="run (e) alone")
    args = parser.parse_args()
    steady_allocator()
    torch.manual_seed(0)
    model = create_classifier("tf_efficientnet_lite0", weights="package").eval()
    names, images = bundled_photos(model)
    if args.overhead_only:
        started = time.perf_counter()
        overhead = bench_overhead(model, images, args.rounds, 8)
        print(overhead_markdown(overhead))
        print(f"\nbenchmark ran in {time.perf_counter() - started:.0f} s on {os.cpu_count()} CPUs "
              f"({torch.get_num_threads()} threads, {allocator_setting()})")  # fmt: skip
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"overhead": overhead}, indent=2) + "\n")
        return
    if args.quick:
        names, images = names[:2], images[:2]
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "allocator": allocator_setting()},
        "throughput": bench_throughput(model, images, 64 if args.quick else 128, 1 if args.quick else 2),
        "moxi_cost": [bench_moxi_cost(model, images, 3 if args.quick else 7)],
        "explainer_fills": bench_explainer_fills(model, images[1:2], ("black", "telea") if args.quick else FILLS),
        "acceptance": bench_acceptance(model, names, images, 1 if args.quick else args.permutations),
        "rollout_smoke": bench_rollout_smoke(images),
        "overhead": bench_overhead(model, images, 1 if args.quick else args.rounds, 2 if args.quick else 8),
    }  # fmt: skip
    results["seconds"] = time.perf_counter() - started
    print(markdown(results))
    print("\n" + overhead_markdown(results["overhead"]))
    print(f"\nbenchmark ran in {results['seconds']:.0f} s on {os.cpu_count()} CPUs ({torch.get_num_threads()} threads)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
