"""A study's cells: where each run's files go, which runs are left to do, and running one cell.

A cell is one (task, optimizer variant) of a study, its unfinished seeds vmapped in one program.
Both the single-process path (`eval.runner`) and the worker processes (`eval.workers`) run cells
with `run_cell`, so every way writes the same files. Importing this module loads no JAX.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from eval.study import Study

DONE = "done.json"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file, fsync and rename: never a half-written file."""
    from optim4rl.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())


def safe_name(name: str) -> str:
    """A folder name for a task or variant label ("adam[lr=0.001]" -> "adam_lr=0.001_")."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)


def run_dir(out: Path, task: str, variant: str, seed: int) -> Path:
    return out / "runs" / safe_name(task) / safe_name(variant) / f"seed{seed}"


TUNING, EVALUATION = "tuning", "evaluation"  # the two stages of a study


def run_config(study: Study, task: str, variant, seed: int, stage: str) -> dict[str, Any]:
    """What config.json records: everything that determines the run's results, and its stage."""
    return {
        "study": study.name,
        "algorithm": study.algorithm,
        "scale": study.scale,
        "preset": study.preset,
        "config": study.config,
        "budget": study.budget,
        "num_evals": study.num_evals,
        "task": task,
        "variant": variant.name,
        "family": variant.family,
        "optimizer": variant.spec,
        "sweep": variant.values,
        "family_config": variant.config,
        "seed": seed,
        "stage": stage,
    }


class ConfigMismatch(RuntimeError):
    """A finished run in the output folder was made with a different configuration."""


def pending_runs(
    study: Study, out: Path, task: str, variant, stage: str = EVALUATION
) -> tuple[list[tuple], int]:
    """The cell's unfinished runs as (seed, folder, config) on the stage's seeds (tuning or
    evaluation), and how many are finished already.

    Raises ConfigMismatch for a finished run made with another configuration."""
    todo, skipped = [], 0
    for seed in study.tuning_seeds if stage == TUNING else study.seeds:
        folder = run_dir(out, task, variant.name, seed)
        config = run_config(study, task, variant, seed, stage)
        if (folder / DONE).exists():
            old = json.loads((folder / "config.json").read_text())
            if old != config:
                raise ConfigMismatch(
                    f"{folder} holds a finished run made with a different configuration; "
                    "give a new --out folder or delete that run"
                )
            skipped += 1
            continue
        todo.append((seed, folder, config))
    return todo, skipped


def run_cell(study: Study, task: str, variant, todo: list[tuple]) -> list[str]:
    """Run one cell's unfinished seeds (vmapped) into their folders; returns one warning per
    diverged seed. A run's done.json is written last, so a killed cell is redone from the start."""
    from eval.algorithms import get_algorithm
    from optim4rl.runtime import distributed

    algorithm = get_algorithm(study.algorithm)
    main = distributed.is_main()  # several processes: all compute, process 0 writes
    files = []
    for _, folder, config in todo:
        if main:
            atomic_write_json(folder / "config.json", config)
        path = folder / "metrics.jsonl" if main else os.devnull
        files.append(open(path, "w"))  # noqa: SIM115 - closed below
    finite = [True] * len(todo)

    def on_eval(i: int, row: dict[str, float]) -> None:
        finite[i] = finite[i] and bool(row.get("finite", 1.0))
        files[i].write(json.dumps(row) + "\n")
        files[i].flush()

    start = time.time()
    try:
        algorithm.run_cell(
            task=task,
            preset=study.preset,
            overrides={**study.config, **variant.config},
            budget=study.budget,
            num_evals=study.num_evals,
            optimizer=algorithm.build_optimizer(variant.spec),
            seeds=[seed for seed, _, _ in todo],
            on_eval=on_eval,
            desc=f"{task} / {variant.name}",
        )
    finally:
        for f in files:
            f.close()
    seconds = time.time() - start
    warnings = []
    for (seed, folder, _), ok in zip(todo, finite, strict=True):
        if not ok:
            warnings.append(
                f"warning: {task} / {variant.name} / seed {seed}: non-finite parameters or loss"
            )
        status = "finished" if ok else "diverged"
        if main:
            atomic_write_json(folder / DONE, {"status": status, "cell_seconds": seconds})
    return warnings
