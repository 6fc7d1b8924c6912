"""Run a study: every (task, optimizer) cell with its seeds vmapped, results written per run.

Cells run one after another in this process, or in parallel (`eval.workers`: local processes or
Ray tasks); every way writes the same files.

Layout under OUT: study.json (the resolved study), and per run
runs/<task>/<variant>/seed<k>/{config.json, metrics.jsonl, done.json}. metrics.jsonl gets one JSON
row per evaluation as it happens; done.json (written last, atomically) marks a finished run, so a
re-run skips finished runs and redoes unfinished ones from the start.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from eval.cells import (  # noqa: F401 - also this module's API, as before
    DONE,
    EVALUATION,
    TUNING,
    ConfigMismatch,
    atomic_write_json,
    pending_runs,
    run_cell,
    run_config,
    run_dir,
    safe_name,
)
from eval.study import Study
from eval.workers import BACKENDS, default_workers, map_cells
from optim4rl.runtime.cli import (
    ArgumentParser,
    add_distributed_arguments,
    add_preset_argument,
    error,
    interrupted,
    non_negative_float,
    positive_int,
)
from optim4rl.runtime.errors import Interrupted, UsageError

CACHE_DIR = "JAX_COMPILATION_CACHE_DIR"


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
    """Run every unfinished run of `study` into `out`, in two stages; returns counts
    {ran, skipped, diverged}.

    Stage 1: every candidate of each swept family on the tuning seeds. Selection: per task and
    family, the candidate with the best mean final score there (`eval.report.scores.chosen`,
    recorded in study.json). Stage 2: the chosen candidates and the unswept families on the
    evaluation seeds. Cells are independent: `workers` > 1 runs them in that many local
    processes (`eval.workers`), `backend="ray"` as Ray tasks on the cluster at `address`
    (default: a local Ray instance, or RAY_ADDRESS), each reserving `cell_gpus` GPUs. Every
    backend writes the same files.
    """
    import jax

    from optim4rl.runtime import distributed

    out = Path(out).resolve()  # workers on other hosts write where the study says
    several = jax.process_count() > 1  # one program over several processes: cells one by one
    if several and backend != "local":
        raise ValueError("a multi-process run runs its cells itself; --backend ray needs one")
    counts = {"ran": 0, "skipped": 0, "diverged": 0}
    families = study.families()
    tuning = [(t, v) for t in study.tasks for f in study.swept() for v in families[f]]
    planned = [(t, v.name, s) for t, v in tuning for s in study.tuning_seeds]
    distributed.barrier("eval.run_study")  # every process has read the folder before writes
    run = dict(workers=workers, backend=backend, address=address, cell_gpus=cell_gpus, log=log)
    with _compilation_cache(out / "jax-cache"):
        todo = _pending(study, out, tuning, TUNING, counts)  # refuses a changed study first
        if tuning:
            _write_plan(study, out, planned, {})
            _run_cells(study, out, todo, TUNING, several=several, counts=counts, **run)
            distributed.barrier("eval.run_study.tuning")
        picked = _select(study, out) if tuning else {}
        evaluation = [
            (t, next(v for v in vs if v.name == picked.get((t, f), v.name)))
            for t in study.tasks
            for f, vs in families.items()
        ]
        todo = _pending(study, out, evaluation, EVALUATION, counts)
        planned += [(t, v.name, s) for t, v in evaluation for s in study.seeds]
        _write_plan(study, out, planned, picked)
        _run_cells(study, out, todo, EVALUATION, several=several, counts=counts, **run)
    return counts


@contextlib.contextmanager
def _compilation_cache(path: Path):
    """JAX's persistent compilation cache in `path` for the study's worker processes (they read it
    from the environment when they start), unless one is configured already: a chosen candidate's
    evaluation cell is the program its tuning cell compiled when the two stages have as many
    seeds. This process's own JAX state is left alone."""
    if os.environ.get(CACHE_DIR):
        yield
        return
    os.environ[CACHE_DIR] = str(path)
    try:
        yield
    finally:
        os.environ.pop(CACHE_DIR, None)


def _write_plan(study: Study, out: Path, planned: list, picked: dict) -> None:
    """study.json: the resolved study, the runs it plans (both stages) and the selection."""
    from optim4rl.runtime import distributed

    if distributed.is_main():
        selection = [{"task": t, "family": f, "chosen": v} for (t, f), v in picked.items()]
        data = study.to_json() | {"planned": planned, "selection": selection}
        atomic_write_json(out / "study.json", data)


def _select(study: Study, out: Path) -> dict[tuple[str, str], str]:
    """(task, family) -> the candidate chosen on the tuning seeds, from the runs on disk."""
    from eval.report import chosen, group_runs, load_runs

    runs, _ = load_runs(out)
    groups, _ = group_runs([r for r in runs if r.stage == TUNING], study.score_key)
    return chosen(groups, study.last)


def _pending(study: Study, out: Path, cells: list, stage: str, counts: dict) -> list[tuple]:
    """The unfinished runs of `cells` [(task, variant)] on the stage's seeds, as
    [(task, variant, runs)]; raises ConfigMismatch for a finished run of another configuration."""
    todo = []
    for task, variant in cells:
        pending, skipped = pending_runs(study, out, task, variant, stage)
        counts["skipped"] += skipped
        if pending:
            todo.append((task, variant, pending))
    return todo


def _run_cells(study, out, todo, stage, *, several, counts, workers, backend, address,
               cell_gpus, log) -> None:  # fmt: skip
    """Run the cells `todo` (`_pending`) with a progress bar over cells."""
    from tqdm.auto import tqdm

    from optim4rl.runtime import distributed

    bar = tqdm(total=len(todo), desc=f"{study.name}: {stage}", unit="cell",
               disable=not distributed.is_main())  # fmt: skip
    if backend == "local" and (several or min(workers, len(todo)) <= 1):
        results = ((i, run_cell(study, *cell)) for i, cell in enumerate(todo))
    else:
        results = map_cells(
            study, todo, workers=workers, backend=backend, address=address, cell_gpus=cell_gpus
        )
    for i, warnings in results:  # in the order the cells finish
        for warning in warnings:
            log(warning)
        counts["ran"] += len(todo[i][2])
        counts["diverged"] += len(warnings)
        bar.update()
    bar.close()


def parser() -> ArgumentParser:
    """The options of `python -m eval run` (imports no JAX)."""
    from eval.study import SCALES, shipped_studies

    p = ArgumentParser(
        prog="python -m eval run",
        description="Run a study (a TOML file or a shipped study: "
        + ", ".join(shipped_studies())
        + ")",
    )
    p.add_argument("study", help="path to a study .toml, or the name of a shipped study")
    p.add_argument("--out", default=None, help="output folder (default: runs/<name>-<preset>)")
    add_preset_argument(p, SCALES, "cpu", "the study's preset (its [scale.PRESET] table)")
    p.add_argument("--no-report", action="store_true", help="do not write the report after")
    p.add_argument(
        "--workers", type=positive_int, help="local worker processes (default: one per core)"
    )
    p.add_argument(
        "--backend",
        default="local",
        choices=BACKENDS,
        help="where cells run: local worker processes or Ray tasks",
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a new one)")
    p.add_argument(
        "--cell-gpus", type=non_negative_float, default=0, help="GPUs per Ray task (a cell)"
    )
    add_distributed_arguments(p)
    return p


def main(argv: list[str]) -> int:
    """`python -m eval run STUDY [--out DIR] [--preset cpu|paper] [--no-report] [--workers N]
    [--backend local|ray] [--address ADDR] [--cell-gpus G]` and the multi-process flags of
    `optim4rl.runtime.distributed` (one program: every cell's seeds sharded over all processes)."""
    args = parser().parse_args(argv)
    from eval.study import StudyError, load_study
    from optim4rl.runtime import distributed

    try:
        distributed.initialize_from_args(args)
        study = load_study(args.study, args.preset)
    except (StudyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/{study.name}-{study.scale}")
    tuning = sum(len(study.families()[f]) for f in study.swept())
    print(
        f"study {study.name} ({study.scale}) -> {out}\n"
        + (
            f"  tuning: {len(study.tasks)} task(s) x {tuning} candidate(s) of "
            f"{', '.join(study.swept())} x {len(study.tuning_seeds)} tuning seed(s)\n"
            if tuning
            else ""
        )
        + f"  evaluation: {len(study.tasks)} task(s) x {len(study.families())} famil"
        f"{'y' if len(study.families()) == 1 else 'ies'} x {len(study.seeds)} evaluation seed(s)"
    )
    try:
        counts = run_study(
            study,
            out,
            workers=args.workers or default_workers(),
            backend=args.backend,
            address=args.address,
            cell_gpus=args.cell_gpus,
        )
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    print(
        f"ran {counts['ran']} run(s), skipped {counts['skipped']} finished, "
        f"{counts['diverged']} diverged"
    )
    if not args.no_report and distributed.is_main():
        from eval.report import write_report

        print(write_report(out))
    return 0
