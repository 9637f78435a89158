"""Labelling tasks: one per kept cluster map of the cluster-map folders written by ``p2pvision inv explain``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from p2pvision.errors import ConfigError
from p2pvision.inv.runs import RUN_FILE, ClusterMapRun, find_runs
from p2pvision.io import path_within


def tasks_of_run(run: ClusterMapRun) -> list[dict[str, Any]]:
    """The tasks of one folder, in layer then cluster order."""
    record = run.record
    tasks = []
    for layer in record["layers"]:
        for cluster in layer["clusters"]:
            if not cluster["kept"]:
                continue
            tasks.append(
                {
                    "task_id": cluster["task"],
                    "run_id": record["id"],
                    "image": record["name"],
                    "layer": layer["layer"],
                    "layer_index": layer["index"],
                    "cluster": cluster["cluster"],
                    "weight": cluster["weight"],
                    "target_name": record["target_name"],
                    "choices": sorted(set(record["choices"])),
                    "reveal_percents": record["reveal_percents"],
                    "reveal": [path_within(run.folder, name, run.folder / RUN_FILE) for name in cluster["reveal"]],
                }
            )
    return tasks


def load_tasks(paths: list[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """Every task under ``paths`` (cluster-map folders or their parents), by task id."""
    tasks: dict[str, dict[str, Any]] = {}
    for run in find_runs(paths):
        for task in tasks_of_run(run):
            tasks.setdefault(task["task_id"], task)
    if not tasks:
        raise ConfigError(f"no cluster maps to label under {', '.join(map(str, paths))}")
    missing = [path for task in tasks.values() for path in task["reveal"] if not Path(path).is_file()]
    if missing:
        raise ConfigError(
            f"reveal image '{missing[0]}' is missing: write the folder again with 'p2pvision inv explain'"
        )
    return tasks
