"""Run a study: every (task, optimizer) cell with its seeds vmapped, results written per run.

Cells run one after another in this process, or in parallel (`eval.workers`: local processes or
Ray tasks); every way writes the same files.

Layout under OUT: study.json (the resolved study), and per run
runs/<task>/<variant>/seed<k>/{config.json, metrics.jsonl, done.json}. metrics.jsonl gets one JSON
row per evaluation as it happens; done.json (written last, atomically) marks a finished run, so a
re-run skips finished runs and redoes unfinished ones from the start.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.study import Study
from optim4rl.checkpoint import atomic_write_bytes

DONE = "done.json"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file, fsync and rename: never a half-written file."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())


def safe_name(name: str) -> str:
    """A folder name for a task or variant label ("adam[lr=0.001]" -> "adam_lr=0.001_")."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)


def run_dir(out: Path, task: str, variant: str, seed: int) -> Path:
    return out / "runs" / safe_name(task) / safe_name(variant) / f"seed{seed}"


def run_config(study: Study, task: str, variant, seed: int) -> dict[str, Any]:
    """What config.json records: everything that determines the run's results."""
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
        "seed": seed,
    }


class ConfigMismatch(RuntimeError):
    """A finished run in the output folder was made with a different configuration."""


def pending_runs(study: Study, out: Path, task: str, variant) -> tuple[list[tuple], int]:
    """The cell's unfinished runs as (seed, folder, config), and how many are finished already.

    Raises ConfigMismatch for a finished run made with another configuration."""
    todo, skipped = [], 0
    for seed in study.seeds:
        folder = run_dir(out, task, variant.name, seed)
        config = run_config(study, task, variant, seed)
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
    from optim4rl import distributed

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
            overrides=study.config,
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


def run_study(
    study: Study,
    out: str | Path,
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    cell_gpus: float = 0,
    log=print,
) -> dict[str, int]:
    """Run every unfinished run of `study` into `out`; returns counts {ran, skipped, diverged}.

    Cells are independent: `workers` > 1 runs them in that many local processes
    (`eval.workers`), `backend="ray"` as Ray tasks on the cluster at `address` (default: a
    local Ray instance, or RAY_ADDRESS), each reserving `cell_gpus` GPUs. Every backend writes the
    same files.
    """
    import jax

    from optim4rl import distributed

    out = Path(out).resolve()  # workers on other hosts write where the study says
    counts = {"ran": 0, "skipped": 0, "diverged": 0}
    cells = []
    for task in study.tasks:
        for variant in study.variants:
            todo, skipped = pending_runs(study, out, task, variant)
            counts["skipped"] += skipped
            if todo:
                cells.append((task, variant, todo))
    several = jax.process_count() > 1  # one program over several processes: cells one by one
    if several and backend != "local":
        raise ValueError("a multi-process run runs its cells itself; --backend ray needs one")
    distributed.barrier("eval.run_study")  # every process has read the folder before writes
    if distributed.is_main():
        atomic_write_json(out / "study.json", study.to_json())
    bar = tqdm(total=len(cells), desc=study.name, unit="cell", disable=not distributed.is_main())
    if backend == "local" and (several or min(workers, len(cells)) <= 1):
        results = ((i, run_cell(study, *cell)) for i, cell in enumerate(cells))
    else:
        from eval.workers import map_cells

        results = map_cells(
            study, cells, workers=workers, backend=backend, address=address, cell_gpus=cell_gpus
        )
    for i, warnings in results:  # in the order the cells finish
        for warning in warnings:
            log(warning)
        counts["ran"] += len(cells[i][2])
        counts["diverged"] += len(warnings)
        bar.update()
    bar.close()
    return counts


def main(argv: list[str]) -> int:
    """`python -m eval run STUDY [--out DIR] [--scale cpu|paper] [--no-report] [--workers N]
    [--backend local|ray] [--address ADDR] [--cell-gpus G]` and the multi-process flags of
    `optim4rl.distributed` (one program: every cell's seeds sharded over all processes)."""
    import argparse

    from eval.study import StudyError, load_study, shipped_studies
    from optim4rl import distributed

    parser = argparse.ArgumentParser(
        prog="python -m eval run",
        description="Run a study (a TOML file or a shipped study: "
        + ", ".join(shipped_studies())
        + ")",
    )
    parser.add_argument("study", help="path to a study .toml, or the name of a shipped study")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<name>-<scale>)")
    parser.add_argument(
        "--scale", default="cpu", choices=("cpu", "paper"), help="the study's scale (default cpu)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not write the report after")
    parser.add_argument(
        "--workers", type=int, help="local worker processes (default: one per core)"
    )
    parser.add_argument(
        "--backend",
        default="local",
        choices=("local", "ray"),
        help="where cells run: local worker processes or Ray tasks (default local)",
    )
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a new one)")
    parser.add_argument("--cell-gpus", type=float, default=0, help="GPUs per Ray task (a cell)")
    distributed.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")
    try:
        distributed.initialize_from_args(args)
        study = load_study(args.study, args.scale)
    except (StudyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/{study.name}-{study.scale}")
    print(
        f"study {study.name} ({study.scale}): {len(study.tasks)} task(s) x {len(study.variants)} "
        f"optimizer(s) x {len(study.seeds)} seed(s) -> {out}"
    )
    from eval.workers import default_workers

    workers = args.workers or default_workers()
    counts = run_study(
        study,
        out,
        workers=workers,
        backend=args.backend,
        address=args.address,
        cell_gpus=args.cell_gpus,
    )
    print(
        f"ran {counts['ran']} run(s), skipped {counts['skipped']} finished, "
        f"{counts['diverged']} diverged"
    )
    if not args.no_report and distributed.is_main():
        from eval.report import write_report

        print(write_report(out))
    return 0
