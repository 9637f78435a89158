"""Speed of region partitioners and of the batched region ops, with ratios against simple references.

(a) Milliseconds per image of each partitioner (SLIC with every available backend, Felzenszwalb, watershed,
    grid) on real photos from scikit-image at 64 and 224 px.
(b) The batched torch ops of ``p2pvision.regions.ops`` against a straightforward implementation that loops
    over images and regions in Python (one boolean mask per region), on the same inputs; the loop results
    are checked to agree before timing.

Prints Markdown tables; ``--json PATH`` also writes the numbers. Usage:
    python benchmarks/bench_regions.py [--repeats 5] [--quick] [--device cpu] [--json results/bench_regions.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage import data
from skimage.transform import resize

from p2pvision.regions import (
    fast_slic_available,
    make_partitioner,
    partition_batch,
    region_adjacency,
    region_areas,
    region_mean,
    region_to_pixel,
)

PHOTOS = ("astronaut", "coffee", "chelsea")


def median_ms(function: Callable[[], Any], repeats: int, device: str = "cpu") -> float:
    """Median wall time of ``function`` in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def photos(size: int) -> list[np.ndarray]:
    """The bundled photos resized to size x size, as uint8 RGB."""
    return [
        (resize(getattr(data, name)(), (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
        for name in PHOTOS
    ]


def bench_partitioners(sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    configs = [("slic", {"backend": "skimage"})]
    if fast_slic_available():
        configs.append(("slic", {"backend": "fast_slic"}))
    configs += [("felzenszwalb", {}), ("watershed", {}), ("grid", {})]
    rows = []
    for name, params in configs:
        partitioner = make_partitioner(name, **params)
        row: dict[str, Any] = {"method": name, "params": partitioner.params}
        for size in sizes:
            images = photos(size)
            row[f"ms_{size}"] = median_ms(lambda: [partitioner(image) for image in images], repeats) / len(images)
            row[f"regions_{size}"] = float(np.mean([partitioner(image).max() + 1 for image in images]))
        rows.append(row)
    return rows


# Straightforward references: loops over images and regions, one boolean mask per region.


def loop_region_mean(values: torch.Tensor, labels: torch.Tensor, slots: int) -> torch.Tensor:
    out = values.new_zeros(values.shape[0], slots, values.shape[1])
    for b in range(values.shape[0]):
        for k in range(slots):
            inside = labels[b] == k
            if inside.any():
                out[b, k] = values[b][:, inside].mean(dim=1)
    return out


def loop_region_areas(labels: torch.Tensor, slots: int) -> torch.Tensor:
    out = torch.zeros(labels.shape[0], slots, dtype=torch.int64, device=labels.device)
    for b in range(labels.shape[0]):
        for k in range(slots):
            out[b, k] = (labels[b] == k).sum()
    return out


def loop_region_to_pixel(coalitions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    batch, rows, slots = coalitions.shape
    out = torch.zeros(batch, rows, *labels.shape[1:], dtype=coalitions.dtype, device=labels.device)
    for b in range(batch):
        for k in range(slots):
            out[b][:, labels[b] == k] = coalitions[b, :, k : k + 1]
    return out


def loop_region_adjacency(labels: torch.Tensor, slots: int) -> torch.Tensor:
    out = torch.zeros(labels.shape[0], slots, slots, dtype=torch.bool, device=labels.device)
    for b in range(labels.shape[0]):
        for k in range(slots):
            inside = labels[b] == k
            grown = inside.clone()
            grown[1:] |= inside[:-1]
            grown[:-1] |= inside[1:]
            grown[:, 1:] |= inside[:, :-1]
            grown[:, :-1] |= inside[:, 1:]
            out[b, k, labels[b][grown & ~inside]] = True
    return out


def bench_ops(configs: list[tuple[int, int, int]], repeats: int, device: str) -> list[dict[str, Any]]:
    rows = []
    for batch, size, slots in configs:
        pictures = photos(size)
        images = torch.from_numpy(np.stack([pictures[i % len(pictures)] for i in range(batch)]))
        images = images.permute(0, 3, 1, 2).float().div(255)
        labels = partition_batch(images, make_partitioner("slic", backend="auto", n_segments=slots)).to(device)
        values = torch.randn(batch, 4, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        coalitions = (torch.rand(batch, 16, slots, generator=torch.Generator().manual_seed(1)) > 0.5).to(device)
        cases = {
            "region_mean (C=4)": (
                lambda: region_mean(values, labels, slots),
                lambda: loop_region_mean(values, labels, slots),
            ),
            "region_areas": (lambda: region_areas(labels, slots), lambda: loop_region_areas(labels, slots)),
            "region_to_pixel (S=16 coalitions)": (
                lambda: region_to_pixel(coalitions, labels),
                lambda: loop_region_to_pixel(coalitions, labels),
            ),
            "region_adjacency": (
                lambda: region_adjacency(labels, slots),
                lambda: loop_region_adjacency(labels, slots),
            ),
        }
        for op, (batched, loop) in cases.items():
            expected, got = loop(), batched()
            if expected.dtype.is_floating_point:
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
            elif not torch.equal(got, expected):
                raise AssertionError(f"{op}: batched and loop results differ")
            batched_ms = median_ms(batched, repeats, device)
            loop_ms = median_ms(loop, max(1, repeats // 2), device)
            rows.append(
                {
                    "op": op,
                    "batch": batch,
                    "size": size,
                    "slots": slots,
                    "batched_ms": batched_ms,
                    "loop_ms": loop_ms,
                    "speedup": loop_ms / batched_ms,
                }
            )
    return rows


def markdown(partition_rows: list[dict[str, Any]], op_rows: list[dict[str, Any]], sizes: list[int]) -> str:
    lines = ["| partitioner | " + " | ".join(f"ms/image {s} px | regions {s} px" for s in sizes) + " |"]
    lines.append("|---|" + "---:|---:|" * len(sizes))
    for row in partition_rows:
        label = row["method"] + (f" ({row['params']['backend']})" if row["method"] == "slic" else "")
        cells = " | ".join(f"{row[f'ms_{s}']:.2f} | {row[f'regions_{s}']:.1f}" for s in sizes)
        lines.append(f"| {label} | {cells} |")
    lines += ["", "| op | B x H x W, K | batched ms | loop ms | speed-up |", "|---|---|---:|---:|---:|"]
    for row in op_rows:
        shape = f"{row['batch']} x {row['size']} x {row['size']}, {row['slots']}"
        timings = f"{row['batched_ms']:.2f} | {row['loop_ms']:.1f} | {row['speedup']:.0f}x"
        lines.append(f"| {row['op']} | {shape} | {timings} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="2 repeats and the small op configuration only")
    parser.add_argument("--device", default="cpu", help="device for the region ops (cpu, cuda, ...)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    repeats = 2 if args.quick else args.repeats
    sizes = [64, 224]
    op_configs = [(32, 64, 100)] if args.quick else [(32, 64, 100), (8, 224, 100)]
    partition_rows = bench_partitioners(sizes, repeats)
    op_rows = bench_ops(op_configs, repeats, args.device)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, "
        f"ops on {args.device}, fast-slic {'installed' if fast_slic_available() else 'not installed'}; "
        f"median of {repeats} runs\n"
    )
    print(markdown(partition_rows, op_rows, sizes))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "device": args.device,
            "repeats": repeats,
        }
        results = {"meta": meta, "partitioners": partition_rows, "ops": op_rows}
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
