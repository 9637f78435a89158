"""P2P against the full-image classifier (Blackbox) on the built-in tasks, over several seeds.

Per task (object, scene) and seed, with the shipped config ``semisynthetic_<task>``:

1. Blackbox: the classifier alone on full images for ``train.epochs`` epochs. Its state after
   ``train.warmup_epochs`` is kept: P2P starts from it (the same as P2P's own warm-up epochs, without training
   that classifier twice), so both arms get the same number of epochs.
2. P2P: selector + classifier for the remaining ``epochs - warmup_epochs`` epochs.
3. Test set: Blackbox accuracy; P2P with dynamic tau for every delta (accuracy, hard kept fraction, precision,
   share of kept pixels on the distractor object, ...); P2P at fixed tau in {0.05, 0.1, 0.2, 0.4, 0.8}.

Every step writes its result and is skipped when run again (resumable; cells can run in parallel processes).
``--table`` prints mean ± std over the seeds as Markdown and writes ``table.md`` / ``summary.json``.

    python benchmarks/p2p_quality.py --out results/p2p_quality --tasks object scene --seeds 0 1 2
    python benchmarks/p2p_quality.py --out results/p2p_quality --table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from pathlib import Path

import torch
from torch.utils.data import DataLoader

import p2pvision  # noqa: F401  (before torchvision/timm)
from p2pvision.cache import write_json
from p2pvision.metrics.p2p_evaluation import evaluate_p2p
from p2pvision.models.backbones import load_classifier
from p2pvision.models.p2p import load_p2p
from p2pvision.regions.partition import make_partitioner
from p2pvision.train.data import build_stage
from p2pvision.train.experiment import load_experiment
from p2pvision.train.run import run_training

FIXED_TAUS = (0.05, 0.1, 0.2, 0.4, 0.8)


def train_blackbox(task: str, seed: int, cell: Path, overrides: list[str]) -> Path:
    """Blackbox for all epochs; a copy of its weights after the warm-up epochs goes to ``blackbox-warmup``."""
    config = load_experiment(f"semisynthetic_{task}", [f"train.seed={seed}", "train.mode=classifier", *overrides])
    warm, full = config.train.warmup_epochs, config.train.epochs
    config.train.lr = config.train.warmup_lr or config.train.lr
    config.train.warmup_epochs, config.train.warmup_lr = 0, None  # P2P-only settings: not part of this run
    if not (cell / "blackbox-warmup" / "model.safetensors").is_file():
        config.train.epochs = warm
        run_training(config, cell / "blackbox")
        shutil.copytree(cell / "blackbox" / "model", cell / "blackbox-warmup", dirs_exist_ok=True)
    if json.loads((cell / "blackbox" / "metrics.json").read_text())["epochs"] < full:
        config.train.epochs = full
        run_training(config, cell / "blackbox", resume=True)
    return cell / "blackbox" / "model"


def train_p2p(task: str, seed: int, cell: Path, overrides: list[str]) -> Path:
    """P2P from the warmed-up Blackbox classifier, for the epochs after the warm-up."""
    if (cell / "p2p" / "model" / "model.safetensors").is_file():
        return cell / "p2p" / "model"
    config = load_experiment(f"semisynthetic_{task}", [f"train.seed={seed}", *overrides])
    config.train.epochs -= config.train.warmup_epochs
    config.train.warmup_epochs = 0
    config.model["classifier_weights"] = str(cell / "blackbox-warmup" / "model.safetensors")
    return run_training(config, cell / "p2p", resume=(cell / "p2p" / "checkpoints" / "last.ckpt").is_file())


@torch.no_grad()
def evaluate_cell(task: str, seed: int, cell: Path, overrides: list[str]) -> dict:
    """Test-set figures of both arms (cached in ``cell/results.json``)."""
    target = cell / "results.json"
    if target.is_file():
        return json.loads(target.read_text())
    config = load_experiment(f"semisynthetic_{task}", [f"train.seed={seed}", *overrides])
    model = load_p2p(cell / "p2p" / "model").eval()
    test = build_stage(config.data, "test", make_partitioner(**model.config.partition), progress=False)
    blackbox = load_classifier(cell / "blackbox" / "model").eval()
    correct = sum(
        int((blackbox(batch["image"]).argmax(-1) == batch["label"]).sum()) for batch in DataLoader(test, 128)
    )
    fixed = {}
    for tau in FIXED_TAUS:
        kept, hits = [], 0
        for batch in DataLoader(test, 128):
            result = model.explain(batch["image"], batch["regions"], tau=tau)
            kept.append(result.kept_fraction)
            hits += int((result.predicted == batch["label"]).sum())
        fixed[str(tau)] = {"accuracy": hits / len(test), "kept_fraction": float(torch.cat(kept).mean())}
    results = {
        "task": task,
        "seed": seed,
        "images": len(test),
        "object_area_share": float(torch.stack([s["object_mask"].float().mean() for s in test]).mean()),
        "blackbox_accuracy": correct / len(test),
        "dynamic": evaluate_p2p(model, test, progress=False),
        "fixed_tau": fixed,
    }
    write_json(target, results)
    return results


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def table(out: Path) -> str:
    """Markdown tables (mean ± std over seeds) of every finished cell under ``out``."""
    cells = [json.loads(p.read_text()) for p in sorted(out.glob("*/seed-*/results.json"))]
    lines = []
    for task in sorted({c["task"] for c in cells}):
        rows = [c for c in cells if c["task"] == task]
        lines += [f"\n### {task} task ({len(rows)} seeds: {', '.join(str(c['seed']) for c in rows)})\n"]
        lines += [f"object area share {mean_std([c['object_area_share'] for c in rows])}; "
                  f"Blackbox test accuracy {mean_std([c['blackbox_accuracy'] for c in rows])}\n"]  # fmt: skip
        keys = ["accuracy", "kept_fraction", "tau", "evaluations", "precision", "object_share", "iou", "pxap",
                "insertion@10", "deletion@10"]  # fmt: skip
        keys = [k for k in keys if all(k in c["dynamic"]["0.99"] for c in rows)]
        lines += ["| delta | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for delta in rows[0]["dynamic"]:
            values = [mean_std([c["dynamic"][delta][k] for c in rows]) for k in keys]
            lines.append(f"| {delta} | " + " | ".join(values) + " |")
        lines += ["", "| fixed tau | accuracy | kept_fraction |", "|---|---|---|"]
        for tau in rows[0]["fixed_tau"]:
            acc = mean_std([c["fixed_tau"][tau]["accuracy"] for c in rows])
            kept = mean_std([c["fixed_tau"][tau]["kept_fraction"] for c in rows])
            lines.append(f"| {tau} | {acc} | {kept} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/p2p_quality")
    parser.add_argument("--tasks", nargs="+", default=["object", "scene"], choices=["object", "scene"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--table", action="store_true", help="only print the table of finished cells")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set train.threads=1 (repeatable)")  # fmt: skip
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table:
        for task in args.tasks:
            for seed in args.seeds:
                cell = out / task / f"seed-{seed}"
                cell.mkdir(parents=True, exist_ok=True)
                try:  # another process may be working on this cell
                    lock = os.open(cell / ".lock", os.O_CREAT | os.O_EXCL)
                except FileExistsError:
                    print(f"skipping {cell}: {cell / '.lock'} exists (delete it if no process works there)")
                    continue
                try:
                    train_blackbox(task, seed, cell, args.overrides)
                    train_p2p(task, seed, cell, args.overrides)
                    evaluate_cell(task, seed, cell, args.overrides)
                finally:
                    os.close(lock)
                    os.unlink(cell / ".lock")
    text = table(out)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
