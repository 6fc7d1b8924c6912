"""The one run driver (optim4rl.runtime.driver), its run folder and the agents on it.

The driver is checked on a small agent whose every number has a plain-Python reference (a
sequential loop over seeds and chunks), then A2C and PPO under the contract against their own
`make_train`, which never goes through the driver.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim4rl.runtime import driver
from optim4rl.runtime.agent import Agent, KeySchedule
from optim4rl.runtime.errors import Interrupted, UsageError
from optim4rl.runtime.folder import RunFolder
from resel.__main__ import main as resel_main

STEPS_PER_CHUNK = 10


def growth_agent(total: int = 60, limit: float = 1e9) -> Agent:
    """x <- 1.5 x + rate + 0.01 noise per chunk (rate ~ U[0, 1) per seed); not finite once x
    exceeds `limit`; evaluation: x plus uniform noise."""

    def init(key):
        return {"x": jnp.zeros(()), "rate": jax.random.uniform(key), "t": jnp.zeros((), jnp.int32)}

    def chunk(s, key):
        x = 1.5 * s["x"] + s["rate"] + 0.01 * jax.random.normal(key)
        return {**s, "x": x, "t": s["t"] + STEPS_PER_CHUNK}, {"x": x, "finite": x < limit}

    def evaluate(s, key):
        return {"return": s["x"] + jax.random.uniform(key), "success": jnp.nan}

    return Agent("growth", init, chunk, lambda s: s["t"], total, evaluate, updates_per_chunk=2)


def reference(seed: int, total: int, limit: float = 1e9) -> list[dict]:
    """The rows of one seed by a Python loop, the driver's default keys drawn by hand."""
    key = jax.random.key(seed)
    x, rate, rows = 0.0, float(jax.random.uniform(key)), []
    for c in range(total // STEPS_PER_CHUNK):
        noise = float(jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 1), c)))
        x = 1.5 * x + rate + 0.01 * noise
        if not x < limit:
            break
        step = (c + 1) * STEPS_PER_CHUNK
        u = float(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(key, 2), step)))
        rows.append({"step": step, "seed": seed, "eval_return": x + u, "x": x})
    return rows


def close(rows, ref):
    assert [(r["step"], r["seed"]) for r in rows] == [(r["step"], r["seed"]) for r in ref]
    for r, e in zip(rows, ref, strict=True):
        assert "eval_success" not in r  # NaN results are left out
        assert r["eval_return"] == pytest.approx(e["eval_return"], rel=1e-5)
        assert r["x"] == pytest.approx(e["x"], rel=1e-5)


def test_driver_rows_equal_a_sequential_loop_over_seeds():
    result = driver.run(growth_agent(), [3, 0, 7], progress=False)
    by_seed = lambda rows, s: [r for r in rows if r["seed"] == s]  # noqa: E731
    for s in (3, 0, 7):
        close(by_seed(result.rows, s), reference(s, 60))
    assert result.diverged == [] and all(r["sec_per_update"] > 0 for r in result.rows)


def test_a_diverged_seed_is_frozen_and_the_others_finish(tmp_path):
    seeds, limit = [0, 1, 2, 3], 6.0
    refs = {s: reference(s, 60, limit) for s in seeds}
    lengths = {s: len(r) for s, r in refs.items()}
    assert min(lengths.values()) < 6 == max(lengths.values())  # some diverge, one finishes
    seen = []
    folder = RunFolder(tmp_path / "run", {"limit": limit})
    result = driver.run(
        growth_agent(60, limit), seeds, folder, progress=False, on_row=lambda i, r: seen.append(r)
    )
    assert sorted(result.diverged) == sorted(s for s in seeds if lengths[s] < 6)
    for s in seeds:
        close([r for r in result.rows if r["seed"] == s], refs[s])
    frozen = {s: result.state["t"][i] for i, s in enumerate(seeds)}
    assert all(frozen[s] == STEPS_PER_CHUNK * lengths[s] for s in seeds)  # state before the chunk
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
              if x and "event" in x]  # fmt: skip
    assert sorted(e["seed"] for e in events) == sorted(result.diverged)
    assert all("frozen" in r["error"] for r in seen if "error" in r)


def interrupt_at(step: int):
    def on_row(i, row):
        if row["step"] == step and i == 0:
            raise KeyboardInterrupt

    return on_row


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    agent, seeds, config = growth_agent(100), [1, 2], {"total": 100}
    full = driver.run(agent, seeds, RunFolder(tmp_path / "full", config), checkpoint_every=20,
                      progress=False)  # fmt: skip
    part = tmp_path / "part"
    with pytest.raises(Interrupted) as err:
        driver.run(agent, seeds, RunFolder(part, config, command="python -m x --out part"),
                   checkpoint_every=20, progress=False, on_row=interrupt_at(50))  # fmt: skip
    assert str(err.value) == (
        f"interrupted at step 50 of 100; the last checkpoint is at step 40 ({part}/checkpoint.msgpack)"
        "; resume with: python -m x --out part --resume"
    )
    with pytest.raises(UsageError, match="already holds a run; add --resume"):
        RunFolder(part, config)
    with pytest.raises(UsageError, match=r"another config: total: 100 \(saved\) vs 90"):
        RunFolder(part, {"total": 90}, resume=True)
    resumed = driver.run(agent, seeds, RunFolder(part, config, resume=True), checkpoint_every=20,
                         progress=False)  # fmt: skip
    strip = lambda rows: [{k: v for k, v in r.items() if k != "sec_per_update"} for r in rows]  # noqa: E731
    assert strip(resumed.rows) == strip(full.rows)
    read = lambda p: strip(map(json.loads, (p / "metrics.jsonl").read_text().splitlines()))  # noqa: E731
    assert read(part) == read(tmp_path / "full")
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(full.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_needs_a_checkpoint_and_the_same_seeds(tmp_path):
    with pytest.raises(UsageError, match="--resume: no checkpoint in"):
        RunFolder(tmp_path / "none", {}, resume=True)
    driver.run(growth_agent(20), [0, 1], RunFolder(tmp_path / "r", {}), progress=False)
    with pytest.raises(ValueError, match=r"holds seeds \[0, 1\], not \[0, 2\]"):
        driver.run(growth_agent(40), [0, 2], RunFolder(tmp_path / "r", {}, resume=True),
                   progress=False)  # fmt: skip


def test_a2c_agent_makes_make_trains_updates():
    """A2C under the contract: windows of `make_train`'s own updates (same keys); the windows'
    logged returns as `window_returns` computes them from make_train's per-update metrics."""
    from meta_train import a2c

    config = a2c.A2CConfig(task="small_dense_short", grad_clip=1.0, num_updates=45)
    opt = optax.adam(3e-3)
    result = driver.run(a2c.make_agent(config, opt, num_evals=4), [0], progress=False)
    state, m = jax.jit(a2c.make_train(config, opt))(jax.random.key(0))
    edges = np.linspace(0, 45, 5).astype(int)  # windows of 11, 11, 11, 12 updates
    want = a2c.window_returns(
        np.asarray(m["episode_return_sum"]), np.asarray(m["episodes"]),
        np.asarray(m["episode_return"]), edges,
    )  # fmt: skip
    per = config.rollout_len * config.num_envs
    assert [r["step"] for r in result.rows] == list(edges[1:] * per)
    np.testing.assert_allclose([r["return"] for r in result.rows], want, rtol=1e-5)
    got = jax.tree.leaves(result.state.train.params)
    for a, b in zip(got, jax.tree.leaves(state.params), strict=True):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b), rtol=1e-4, atol=1e-6)


def test_ppo_agent_reproduces_make_train_exactly():
    from eval.ppo import make_train, preset
    from eval.ppo.train import make_agent

    config = preset("cpu", num_timesteps=2000, num_evals=3, num_envs=8, batch_size=8,
                    num_minibatches=2, episode_length=50, num_eval_envs=4)  # fmt: skip
    opt = optax.adam(3e-4)
    result = driver.run(make_agent(config, opt), [0, 1], progress=False)
    _, m = jax.jit(jax.vmap(make_train(config, opt)))(jax.vmap(jax.random.key)(np.arange(2)))
    for s in (0, 1):
        rows = [r for r in result.rows if r["seed"] == s]
        assert [r["step"] for r in rows] == list(np.asarray(m["env_steps"][s]).astype(int))
        assert [r["eval_return"] for r in rows] == list(np.asarray(m["eval_return"][s]))
        np.testing.assert_allclose(
            [r["total_loss"] for r in rows[1:]], m["total_loss"][s, 1:], rtol=1e-5
        )


def test_default_keys_are_the_seeds_keys():
    keys = KeySchedule()
    np.testing.assert_array_equal(
        jax.random.key_data(keys.init([4, 5])),
        jax.random.key_data(jax.vmap(jax.random.key)(np.array([4, 5]))),
    )


def test_cli_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path, capsys):
    """`python -m resel` (a default run: replay ring sized by the config) stopped by a SIGINT
    after its first checkpoint prints one line and exits 130; the identical command with --resume
    finishes the run exactly as an uninterrupted one; without --resume it is refused (exit 2).
    In this process (one compilation for the three runs): Python runs the SIGINT handler, which
    raises KeyboardInterrupt, in the main thread, as in a terminal."""
    import os
    import signal
    import threading
    import time

    args = ["--env", "pendulum-p", "--preset", "cpu", "--steps", "600", "--warmup", "200",
            "--eval-every", "200", "--checkpoint-every", "200", "--batch-size", "64",
            "--encoder", "gru", "--no-progress"]  # fmt: skip
    part, full = tmp_path / "part", tmp_path / "full"

    def ctrl_c_after_the_first_checkpoint():
        while not (part / "checkpoint.msgpack").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_after_the_first_checkpoint, daemon=True).start()
    capsys.readouterr()
    assert resel_main([*args, "--out", str(part)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted at step "), err
    assert "the last checkpoint is at step 400" in err[0]
    assert err[0].endswith(
        " ".join(["python", "-m", "resel", *args, "--out", str(part), "--resume"])
    )
    assert resel_main([*args, "--out", str(part)]) == 2  # the folder holds a run
    assert resel_main([*args, "--out", str(part), "--resume"]) == 0
    assert resel_main([*args, "--out", str(full)]) == 0

    def rows(folder):
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "sec_per_update"} for x in lines]

    assert [r["step"] for r in rows(full)] == [400, 600]
    assert rows(part) == rows(full)
