"""A study's cells in two local worker processes and as tasks of a real local Ray instance write
exactly the files that one process writes; a parallel re-run redoes only unfinished runs; the
study as one program over two processes writes the same numbers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from eval.runner import DONE, run_study
from eval.study import load_study

STUDY = """\
[study]
name = "tiny_parallel"
algorithm = "a2c"
tasks = ["catch", "small_dense_short"]
num_evals = 2

[scale.cpu]
preset = "cpu"
seeds = 2
budget = 800

[optimizers.adam]
spec = "adam(learning_rate=3e-3)"
"""


CACHE_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def _results(out: Path) -> dict[str, str]:
    """Every run's config and metrics (done.json holds wall-clock seconds, so only its status)."""
    files = {}
    for path in sorted((out / "runs").rglob("*")):
        if path.name in ("config.json", "metrics.jsonl"):
            files[str(path.relative_to(out))] = path.read_text()
        elif path.name == DONE:
            files[str(path.relative_to(out))] = json.loads(path.read_text())["status"]
    return files


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The study run in this process; its compiled cells are shared with the workers through
    JAX's persistent compilation cache (what is compared is what the cells write)."""
    folder = tmp_path_factory.mktemp("workers")
    (folder / "s.toml").write_text(STUDY)
    study = load_study(folder / "s.toml", "cpu")
    cache = str(folder / "jax-cache")
    saved = {k: os.environ.get(k) for k in CACHE_ENV}
    os.environ.update(dict(zip(CACHE_ENV, (cache, "0"), strict=True)))  # read by the workers
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    compilation_cache.reset_cache()  # JAX decides at its first compile whether to cache
    try:
        counts = run_study(study, folder / "one", log=lambda *_: None)
        assert counts == {"ran": 4, "skipped": 0, "diverged": 0}
        results = _results(folder / "one")
        assert len(results) == 12 and all(v == "finished" for k, v in results.items() if DONE in k)
        yield study, folder, results
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        compilation_cache.reset_cache()  # later tests in this process compile without it
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_two_local_workers_write_what_one_process_writes(one_process):
    study, folder, expected = one_process
    out = folder / "two"
    assert run_study(study, out, workers=2)["ran"] == 4
    assert _results(out) == expected
    # killed runs (no done.json) are redone and nothing else is
    for seed in (0, 1):
        (out / "runs" / "catch" / "adam" / f"seed{seed}" / DONE).unlink()
    (out / "runs" / "catch" / "adam" / "seed1" / "metrics.jsonl").write_text("{half a row")
    counts = run_study(study, out, workers=2)
    assert counts == {"ran": 2, "skipped": 2, "diverged": 0}
    assert _results(out) == expected


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray starts its processes
def test_ray_tasks_write_what_one_process_writes(one_process):
    ray = pytest.importorskip("ray", reason='the optional extra: pip install -e ".[ray]"')
    study, folder, expected = one_process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert run_study(study, folder / "ray", backend="ray")["ran"] == 4
    finally:
        ray.shutdown()
    assert _results(folder / "ray") == expected


def _rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_two_processes_shard_each_cells_seeds_and_write_once(one_process):
    """`python -m eval run` as one program over two processes (gloo): each cell's two seeds are
    sharded one per process; process 0 writes the same runs as one process (to float tolerance)."""
    study, folder, expected = one_process
    out = folder / "two_processes"
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    cmd = [sys.executable, "-m", "eval", "run", str(folder / "s.toml"), "--out", str(out)]
    cmd += ["--no-report", "--heartbeat-timeout", "900"]  # the suite oversubscribes the cores
    cmd += ["--coordinator", address, "--num-processes", "2", "--process-id"]
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}  # one CPU device each
    procs = [
        subprocess.Popen(
            [*cmd, str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for i in range(2)
    ]
    for p in procs:
        output = p.communicate(timeout=600)[0]
        assert p.returncode == 0, output[-3000:]
    got = _results(out)
    assert got.keys() == expected.keys()
    for name, text in expected.items():
        if name.endswith("metrics.jsonl"):
            for a, b in zip(_rows(got[name]), _rows(text), strict=True):
                assert a.keys() == b.keys()
                np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5)
        else:
            assert got[name] == text, name
