"""The demo job run by ``make demo``: train P2P on the built-in data, evaluate it, explain test images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from p2pvision.cache import atomic_path, write_json
from p2pvision.report.contact_sheet import SHEET_PARTITION, write_contact_sheet

if TYPE_CHECKING:
    from p2pvision.train.experiment import ExperimentConfig

DEMO_PARTITION = SHEET_PARTITION
DEMO_IMAGES = 8
EVALUATION_IMAGES = 500  # of the test split: enough for two-decimal figures, quick on a CPU
DEMO_DELTAS = (0.9, 0.99)  # certainties of the tau search in the table (the demo model's own: model.delta)
DEMO_TAUS = (0.1,)  # a fixed budget beside them: the sparse end of the accuracy-sparsity frontier

__all__ = ["DemoPlan", "DemoResult", "plan_demo", "run_demo", "write_contact_sheet"]


@dataclass
class DemoPlan:
    """The demo's experiment (``config``), its output folder and where it trains: ``run``, ``model_dir``."""

    config: ExperimentConfig
    out: Path
    run: Path
    model_dir: Path

    @property
    def reuses_model(self) -> bool:
        """Whether a model trained earlier in ``model_dir`` is reused (else the demo trains one)."""
        return (self.model_dir / "model.safetensors").is_file()


@dataclass
class DemoResult:
    """What the demo did: the metrics table (Markdown), the demo images classified correctly out of ``images``,
    and the contact sheet it wrote."""

    table: str
    correct: int
    images: int
    sheet: Path


def plan_demo(out: Path, config_file: str | Path = "demo") -> DemoPlan:
    """Load the demo's experiment and name its folders under ``out``."""
    from p2pvision.train.experiment import load_experiment

    config = load_experiment(config_file)
    run = out / "run"
    return DemoPlan(config=config, out=out, run=run, model_dir=run / "model")


def _markdown_table(report: dict[str, dict[str, float]], keys: list[str], directions: dict[str, bool]) -> str:
    header = "| setting | " + " | ".join(f"{k} {'↑' if directions[k] else '↓'}" for k in keys) + " |"
    rule = "|---" * (len(keys) + 1) + "|"
    rows = [f"| {setting} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for setting, row in report.items()]
    return "\n".join([header, rule, *rows]) + "\n"


def run_demo(plan: DemoPlan) -> DemoResult:
    """Train (or reuse) P2P on the object task, evaluate on the test split, explain a few test images."""
    from p2pvision.benchmark.evaluate import evaluate_checkpoint
    from p2pvision.data.builtin import SemiSyntheticDataset
    from p2pvision.data.region_cache import RegionDataset
    from p2pvision.errors import ConfigError
    from p2pvision.models.p2p.checkpoint import load_p2p
    from p2pvision.predict import predict_files
    from p2pvision.regions.partition import make_partitioner
    from p2pvision.train.data import build_stage
    from p2pvision.train.run import run_training

    config, out, run, model_dir = plan.config, plan.out, plan.run, plan.model_dir
    if not plan.reuses_model:
        run_training(config, run, resume=(run / "checkpoints" / "last.ckpt").is_file())
    model = load_p2p(model_dir)
    test = build_stage(config.data, "test", make_partitioner(**model.config.partition), progress=False)
    if not isinstance(test, RegionDataset) or not isinstance(test.dataset, SemiSyntheticDataset):
        raise ConfigError("the demo needs data.source semisynthetic with data.region_cache on")
    count = min(EVALUATION_IMAGES, len(test))
    report = evaluate_checkpoint(model_dir, out / "evaluation", "test", DEMO_DELTAS, images=count, taus=DEMO_TAUS)
    directions = report.pop("directions")
    keys = ["accuracy", "kept_fraction", "tau", "precision", "iou", "pxap", "insertion@10", "deletion@10"]
    table = _markdown_table(report, keys, directions)
    chance = test.dataset.relevant_area_share
    write_json(out / "metrics.json", {"test": report, "object_area_share": chance})
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(f"P2P on the semi-synthetic object task, test split ({count} images)\n\n{table}")
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(DEMO_IMAGES):
        sample = test[index]
        path = inputs / f"test_{index:02d}_{test.classes[sample['label']]}.png"
        picture = (sample["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        with atomic_path(path) as tmp:
            Image.fromarray(picture).save(tmp)
        paths.append(path)
    records, _ = predict_files(model, paths, out / "predictions", progress=False)  # the demo's own images
    generation = test.dataset.data.config
    sheet = write_contact_sheet(generation, "object", "train", out / "contact_sheet.png")
    correct = sum(r["class"] in Path(r["file"]).stem for r in records)
    return DemoResult(table=table, correct=correct, images=len(records), sheet=sheet)
