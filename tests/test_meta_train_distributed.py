"""Meta-training as one program over two real local processes (gloo CPU collectives) against one
process over the same units; a killed two-process run resumed by one process; the setup's rules."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from meta_train.config import preset
from meta_train.pipeline import Pipeline
from meta_train.run import CHECKPOINT, load_checkpoint, train
from optim4rl.runtime import distributed

ROOT = Path(__file__).resolve().parent.parent
# the cheapest pipeline to compile; two units, so each of two processes holds one
CONFIG = dict(tasks=("catch",), kind="lin", units_per_task=2, inner_steps=1, rollout_len=5)

KILLED_AFTER_TWO_STEPS = textwrap.dedent(
    f"""
    import os, signal, sys
    from optim4rl.runtime import distributed
    # from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, ...; the suite oversubscribes the cores
    assert distributed.initialize(heartbeat_timeout=900)
    import jax
    from meta_train.config import preset
    from meta_train.run import train
    assert jax.process_count() == 2 and len(jax.devices()) == 2
    train(preset("smoke", **{CONFIG!r}), sys.argv[1], progress=False, stop_after=2)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean shutdown, as if the job were killed
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(out: Path) -> list[subprocess.Popen]:
    address = f"localhost:{_free_port()}"
    procs = []
    for i in range(2):
        env = {
            **os.environ,
            "JAX_COORDINATOR_ADDRESS": address,
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(i),
        }
        env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # one CPU device per process
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", KILLED_AFTER_TWO_STEPS, str(out)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _close(a, b) -> None:
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_two_processes_match_one_and_a_killed_run_resumes_with_one(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    procs = _launch(two)  # compiles while this process compiles the one-process reference
    config = preset("smoke", **CONFIG)
    pipeline = Pipeline(config)
    train(config, one, pipeline=pipeline, progress=False, stop_after=2)
    for p in procs:
        output = p.communicate(timeout=600)[0]
        assert p.returncode == -signal.SIGKILL, output[-3000:]

    template = distributed.host_zeros(pipeline.init())
    (a, ha), (b, hb) = (load_checkpoint(d / CHECKPOINT, template) for d in (one, two))
    assert ha["step"] == hb["step"] == 2
    _close(a, b)  # meta-params, Adam state and every unit after two meta-steps
    assert max(np.abs(x).max() for x in _leaves(a.meta_opt_state)) > 0
    rows = [
        [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (one, two)
    ]
    assert [r["step"] for r in rows[1]] == [0, 1]
    np.testing.assert_allclose(
        [r["meta_loss"] for r in rows[0]], [r["meta_loss"] for r in rows[1]], rtol=1e-5
    )

    # the two-process run, killed after two meta-steps, finished by one process
    final = [train(config, d, resume=True, pipeline=pipeline, progress=False) for d in (one, two)]
    _close(final[0].meta_params, final[1].meta_params)
    assert [json.loads(x)["step"] for x in (two / "metrics.jsonl").read_text().splitlines()] == [
        0,
        1,
        2,
    ]


def test_settings_from_flags_environment_and_slurm():
    full = {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}
    assert distributed.settings("h:1", 2, 1, environ={}) == full
    env = dict(zip(distributed.ENV, ("h:1", "2", "1"), strict=True))
    assert distributed.settings(environ=env) == full
    assert distributed.settings("h:1", 2, 1, environ={**env, "JAX_PROCESS_ID": "0"}) == full
    slurm = {"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}
    assert distributed.settings(environ=slurm) == {}  # jax.distributed reads Slurm's variables
    assert distributed.settings(environ={**slurm, "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert distributed.settings(environ={}) is None
    with pytest.raises(ValueError, match="give all of --coordinator"):
        distributed.settings("h:1", 2, None, environ={})
    with pytest.raises(ValueError, match="process id 2 is not in 0..1"):
        distributed.settings("h:1", 2, 2, environ={})
