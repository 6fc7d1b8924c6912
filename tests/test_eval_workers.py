"""A study's cells in two local worker processes and as tasks of a real local Ray instance write
exactly the files that one process writes; a parallel re-run redoes only unfinished runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import pytest

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
    try:
        counts = run_study(study, folder / "one", log=lambda *_: None)
        assert counts == {"ran": 4, "skipped": 0, "diverged": 0}
        results = _results(folder / "one")
        assert len(results) == 12 and all(v == "finished" for k, v in results.items() if DONE in k)
        yield study, folder, results
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
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
