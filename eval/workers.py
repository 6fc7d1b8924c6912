"""A study's cells in parallel: local worker processes (`concurrent.futures`) or Ray tasks.

Cells are independent (each writes only its own run folders), so the engines' plain task maps
suffice: `ProcessPoolExecutor` with spawned processes (a fork of a process that already runs JAX's
threads can deadlock), or one Ray task per cell with one CPU each (`pip install -e ".[ray]"`).
Each cell runs `eval.cells.run_cell`, the function the single-process path runs, so every
backend writes the same files; a worker's own progress bars are silenced, the study's bar counts
finished cells.

Local workers are pinned one per core when there are no more workers than cores: XLA:CPU keeps a
second core about half busy for one process (1.55 cores for an A2C cell that runs 1.3x faster than
on one core), so unpinned workers steal each other's cycles (docs/eval.md, `bench scaling`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from eval.cells import run_cell
from eval.study import Study

BACKENDS = ("local", "ray")


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _quiet_cell(study: Study, task: str, variant, todo: list[tuple]) -> list[str]:
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        return run_cell(study, task, variant, todo)


def map_cells(
    study: Study,
    cells: list[tuple],
    *,
    workers: int,
    backend: str,
    address: str | None = None,
    cell_gpus: float = 0,
) -> Iterator[tuple[int, list[str]]]:
    """Run `cells` [(task, variant, todo)]; yields (cell index, its warnings) as cells finish.

    `cell_gpus`: GPUs a Ray task reserves (Ray then sets its CUDA_VISIBLE_DEVICES)."""
    if backend == "local":
        yield from _local(study, cells, workers)
    elif backend == "ray":
        yield from _ray(study, cells, address, cell_gpus)
    else:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


def _pin(cores) -> None:
    """Worker initializer: run this process (and the threads it starts later) on one core."""
    os.sched_setaffinity(0, {cores.get()})


def _local(study: Study, cells: list[tuple], workers: int) -> Iterator[tuple[int, list[str]]]:
    context = multiprocessing.get_context("spawn")
    workers = min(workers, len(cells))
    pin: dict = {}
    if hasattr(os, "sched_setaffinity") and 1 < workers <= len(os.sched_getaffinity(0)):
        cores = context.Queue()
        for core in sorted(os.sched_getaffinity(0))[:workers]:
            cores.put(core)
        pin = {"initializer": _pin, "initargs": (cores,)}
    with ProcessPoolExecutor(workers, mp_context=context, **pin) as pool:
        futures = {pool.submit(_quiet_cell, study, *cell): i for i, cell in enumerate(cells)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # on an error, cells not yet started are dropped; running ones finish
            for future in futures:
                future.cancel()


def _ray(
    study: Study, cells: list[tuple], address: str | None, cell_gpus: float
) -> Iterator[tuple[int, list[str]]]:
    try:
        import ray
    except ImportError:
        raise RuntimeError('--backend ray needs Ray: pip install -e ".[ray]"') from None
    started = not ray.is_initialized()
    if started:  # address None: RAY_ADDRESS, else a new local instance
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, num_gpus=cell_gpus)(_quiet_cell)
        refs = {task.remote(study, *cell): i for i, cell in enumerate(cells)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield refs[done[0]], ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
