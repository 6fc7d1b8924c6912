"""`python -m eval bench scaling [--budget N] [--preset cpu --units N]`: what parallelism buys.

1. Study throughput: a study of 4 small A2C cells (four gridworlds, 4 seeds each) run by
   `python -m eval run --workers 1` and by `--workers 2`, each a fresh process timed end to end
   (start-up and compilation included, as a user sees it); env-steps/s and the ratio.
2. Meta-training: meta-iterations/s of one program as 1 process and as 2 processes
   (`jax.distributed`, gloo collectives on CPU) over the same total units; the ratio. On one
   machine with 2 cores the two processes share the cores, so this shows the cost of the
   collectives, not a speed-up; across hosts each process brings its own devices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eval.bench import cli

STUDY = """\
[study]
name = "bench_scaling"
algorithm = "a2c"
tasks = ["small_dense_short", "small_dense_long", "big_sparse_short", "big_dense_short"]
num_evals = 2

[scale.cpu]
preset = "cpu"
seeds = 4
budget = {budget}

[optimizers.adam]
spec = "adam(learning_rate=3e-3)"
"""


def study_seconds(folder: Path, budget: int, workers: int) -> tuple[float, dict[str, float]]:
    """Wall time of `python -m eval run` of the 4-cell study with `workers` processes, and each
    cell's own seconds (its done.json: compilation and training, not process start-up)."""
    path = folder / "scaling.toml"
    path.write_text(STUDY.format(budget=budget))
    out = folder / f"workers{workers}"
    cmd = [sys.executable, "-m", "eval", "run", str(path), "--out", str(out), "--no-report"]
    start = time.perf_counter()
    subprocess.run([*cmd, "--workers", str(workers)], check=True, capture_output=True)
    wall = time.perf_counter() - start
    cells = {}
    for done in out.rglob("done.json"):
        cell = done.relative_to(out).parts[1]  # runs/<task>/<variant>/seed_k/done.json
        cells[cell] = json.loads(done.read_text())["cell_seconds"]
    return wall, cells


def meta_worker(preset: str, units: int, repeats: int) -> None:
    """One process of the meta-training benchmark (run by `meta_seconds`); process 0 prints the
    median seconds per meta-iteration as JSON."""
    from optim4rl.runtime import distributed

    distributed.initialize()
    import jax

    from eval.bench.timing import time_fn
    from meta_train.config import preset as meta_preset
    from meta_train.pipeline import Pipeline, make_mesh

    config = meta_preset(preset, units_per_task=units)
    pipeline = Pipeline(config, make_mesh() if len(jax.devices()) > 1 else None)
    state, key = pipeline.init(), jax.random.key(1)
    seconds = time_fn(lambda: pipeline.step(state, key)[1], repeats=repeats)
    if distributed.is_main():
        print(json.dumps({"seconds": seconds, "devices": len(jax.devices())}))


def meta_seconds(processes: int, preset: str, units: int, repeats: int) -> float:
    """Seconds per meta-iteration of `processes` local processes (one CPU device each)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    code = (
        f"from eval.bench.scaling import meta_worker; meta_worker({preset!r}, {units}, {repeats})"
    )
    procs = []
    for i in range(processes):
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        if processes > 1:
            env.update(
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES=str(processes),
                JAX_PROCESS_ID=str(i),
            )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
            )
        )
    outputs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a meta-training benchmark process failed: {outputs}")
    result = json.loads(outputs[0].strip().splitlines()[-1])
    assert result["devices"] == processes
    return result["seconds"]


def main(argv: list[str]) -> int:
    args = cli.scaling().parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cores} cores; load average {os.getloadavg()[0]:.1f} at the start")
    if args.skip != "study":
        steps = 4 * 4 * args.budget
        with tempfile.TemporaryDirectory() as tmp:
            (one, cells1), (two, cells2) = (
                study_seconds(Path(tmp), args.budget, w) for w in (1, 2)
            )
        print(f"study, 4 A2C cells x 4 seeds x {args.budget} steps (end to end, start-up included)")
        for w, s, cells in ((1, one, cells1), (2, two, cells2)):
            each = ", ".join(f"{k} {v:.1f}" for k, v in sorted(cells.items()))
            print(f"  --workers {w}  {s:8.1f} s  {steps / s:10.0f} env-steps/s   cells (s): {each}")
        print(f"  throughput ratio workers 2 / workers 1: {one / two:.2f}x")
        print(
            f"  cell seconds summed: {sum(cells1.values()):.1f} (1 worker) vs "
            f"{sum(cells2.values()):.1f} (2 workers): a cell is slower beside another; the rest "
            "of the wall time is start-up and the last cell's tail"
        )
    if args.skip != "meta-train":
        one, two = (meta_seconds(n, args.preset, args.units, args.repeats) for n in (1, 2))
        print(f"meta-training, preset {args.preset}, {args.units} units per task in all")
        for n, s in ((1, one), (2, two)):
            print(
                f"  {n} process(es)  {s * 1e3:8.1f} ms per meta-iteration  {1 / s:6.3f} meta-it/s"
            )
        print(f"  meta-it/s ratio 2 processes / 1 process: {one / two:.2f}x")
    return 0
