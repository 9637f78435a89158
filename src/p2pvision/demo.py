"""The demo job run by ``make demo``: train P2P on the built-in data, evaluate it, explain test images."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset

from p2pvision.cache import atomic_path, write_json
from p2pvision.data.builtin import SemiSyntheticDataset
from p2pvision.data.semisynthetic import SemiSyntheticConfig, Split, Task
from p2pvision.regions.partition import make_partitioner, partition_batch
from p2pvision.report.contact_sheet import contact_sheet

DEMO_PARTITION = {"name": "slic", "n_segments": 50, "compactness": 20.0}
DEMO_IMAGES = 8
EVALUATION_IMAGES = 500  # of the test split: enough for two-decimal figures, quick on a CPU


def write_contact_sheet(
    config: SemiSyntheticConfig, task: Task, split: Split, out: Path, count: int = 32, root: Path | None = None
) -> Path:
    """A PNG of the first ``count`` images of a split: object mask outlines (yellow), SLIC boundaries, labels."""
    dataset = SemiSyntheticDataset(split, task, config, root=root)
    count = min(count, len(dataset))
    images = np.array(dataset.arrays.images[:count])
    partitioner = make_partitioner(**DEMO_PARTITION)
    regions = partition_batch(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, partitioner).numpy()
    data = dataset.data
    captions = [
        f"{data.object_classes[o]} | {data.scene_classes[s]}"
        for o, s in zip(dataset.arrays.object_labels[:count], dataset.arrays.scene_labels[:count])
    ]
    sheet = contact_sheet(images, np.asarray(dataset.arrays.object_masks[:count]), regions, captions, scale=3)
    with atomic_path(out) as tmp:
        sheet.save(tmp)
    return out


def _markdown_table(report: dict[str, dict[str, float]], keys: list[str]) -> str:
    from p2pvision.metrics.p2p_evaluation import HIGHER_IS_BETTER

    header = "| delta | " + " | ".join(f"{k} {'↑' if HIGHER_IS_BETTER[k] else '↓'}" for k in keys) + " |"
    rule = "|---" * (len(keys) + 1) + "|"
    rows = [f"| {delta} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |" for delta, row in report.items()]
    return "\n".join([header, rule, *rows]) + "\n"


def run_demo(out: Path, config_file: str | Path = "demo") -> None:
    """Train (or reuse) P2P on the object task, evaluate on the test split, explain a few test images."""
    from p2pvision.metrics.p2p_evaluation import evaluate_p2p
    from p2pvision.models.p2p.checkpoint import load_p2p
    from p2pvision.predict import predict_files
    from p2pvision.train.data import build_stage
    from p2pvision.train.experiment import load_experiment
    from p2pvision.train.run import run_training

    start = time.perf_counter()
    config = load_experiment(config_file)
    run, model_dir = out / "run", out / "run" / "model"
    if (model_dir / "model.safetensors").is_file():
        print(f"reusing the model trained earlier in {model_dir} (delete {out} to train again)")
    else:
        warm, total = config.train.warmup_epochs, config.train.epochs
        print(f"training P2P on the semi-synthetic object task on the CPU: {warm} warm-up epochs of the classifier")
        print(f"on full images, then {total - warm} epochs of selector and classifier together...")
        run_training(config, run, resume=(run / "checkpoints" / "last.ckpt").is_file())
    model = load_p2p(model_dir)
    test = build_stage(config.data, "test", make_partitioner(**model.config.partition), progress=False)
    evaluated = Subset(test, range(min(EVALUATION_IMAGES, len(test))))
    report = evaluate_p2p(model, evaluated, deltas=(0.9, 0.99), progress=True)
    keys = ["accuracy", "kept_fraction", "tau", "precision", "iou", "pxap", "insertion@10", "deletion@10"]
    table = _markdown_table(report, keys)
    chance = test.dataset.relevant_area_share if hasattr(test, "dataset") else None
    write_json(out / "metrics.json", {"test": report, "object_area_share": chance})
    with atomic_path(out / "metrics.md") as tmp:
        tmp.write_text(f"P2P on the semi-synthetic object task, test split ({len(evaluated)} images)\n\n{table}")
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
    records = predict_files(model, paths, out / "predictions", progress=False)
    generation = test.dataset.data.config
    sheet = write_contact_sheet(generation, "object", "train", out / "contact_sheet.png")
    print()
    print(table)
    correct = sum(r["class"] in Path(r["file"]).stem for r in records)
    print(f"{correct}/{len(records)} demo images classified correctly; figures show what the classifier saw")
    print(f"finished in {time.perf_counter() - start:.0f} s. Results in {out.resolve()}:")
    print(f"  metrics:        {(out / 'metrics.md').resolve()} (and metrics.json)")
    print(f"  predictions:    {(out / 'predictions').resolve()} (PNG per image, predictions.json)")
    print(f"  model:          {model_dir.resolve()}")
    print(f"  training logs:  {(run / 'logs' / 'metrics.csv').resolve()}")
    print(f"  data samples:   {sheet.resolve()}")
