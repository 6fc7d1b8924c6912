"""A2C agent, pipeline meta-training, the run folder (checkpoints, resume, NaN guard), the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim4rl
from meta_train.__main__ import main as cli
from meta_train.a2c import A2CConfig, Agent, make_train
from meta_train.config import MetaTrainConfig, preset
from meta_train.pipeline import Pipeline, reset_indices
from meta_train.run import (
    CHECKPOINT,
    META_PARAMS,
    NonFiniteMetaGradient,
    initial_meta_params,
    load_checkpoint,
    train,
)
from optim4rl.runtime.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def test_reset_schedule_covers_every_age():
    r = reset_indices(8, 72)
    assert r.tolist() == [0, 10, 20, 30, 40, 50, 60, 71]
    # simulate: every unit resets exactly once per interval, at its own offset
    resets = np.array([[t % 72 == rj for rj in r] for t in range(144)])
    assert resets.sum(0).tolist() == [2] * 8
    assert reset_indices(8, 72, pipeline=False).tolist() == [0] * 8


@pytest.mark.parametrize("pipelined", [True, False])
def test_resets_initialise_only_resetting_units(pipelined):
    """Unit j is replaced at step t iff t mod m == r_j, by the unit split(key, n)[j] initialises,
    the rest are untouched: the same as building all n fresh units and selecting (the reference)."""
    cfg = preset("smoke", tasks=("small_dense_short",), units_per_task=5, reset_interval=3,
                 rollout_len=3, kind="lin", pipeline=pipelined)  # fmt: skip
    p = Pipeline(cfg)
    state = p.init(jax.random.key(0))
    agent, units, key = p.agents[0], state.units[0], jax.random.key(7)
    all_fresh = p._fresh_units(agent, jax.random.split(key, 5), state.meta_params)
    replaced = set()
    reset = jax.jit(p._reset_units, static_argnums=0)
    for t in range(6):
        got = reset(agent, units, key, state.meta_params, jnp.int32(t))
        mask = np.asarray(t % 3 == reset_indices(5, 3, pipelined))
        replaced |= set(np.flatnonzero(mask))
        for g, f, u in zip(*map(jax.tree_util.tree_leaves, (got, all_fresh, units)), strict=True):
            m = mask.reshape((-1,) + (1,) * (u.ndim - 1))
            np.testing.assert_array_equal(g, np.where(m, f, u))
    assert replaced == set(range(5))


def test_a2c_loss_matches_sequential_reference():
    agent = Agent(A2CConfig(task="small_dense_short", num_envs=3, rollout_len=7, reward_scale=2.0))
    params = agent.init_params(jax.random.key(0))
    traj, carry = agent.rollout(params, agent.init_env(jax.random.key(1)), jax.random.key(2))
    # make the reference exercise rewards and episode ends
    rng = np.random.default_rng(0)
    traj = traj._replace(
        reward=jnp.asarray(rng.choice([-1.0, 0.0, 1.0], size=(7, 3)), jnp.float32),
        done=jnp.asarray(rng.random((7, 3)) < 0.2),
    )
    loss, aux = agent.loss(params, traj, carry.obs)

    logits, values = agent.net.apply(params, np.concatenate([traj.obs, carry.obs[None]]))
    logits, values = np.asarray(logits, np.float64), np.asarray(values, np.float64)
    c, rew, done = agent.config, np.asarray(traj.reward) * 2.0, np.asarray(traj.done)
    g = np.zeros((7, 3))
    nxt = values[7]
    for t in reversed(range(7)):
        k = 1.0 - done[t]
        nxt = rew[t] + c.gamma * k * ((1 - c.lam) * values[t + 1] + c.lam * nxt)
        g[t] = nxt
    logp = logits[:7] - np.log(np.exp(logits[:7]).sum(-1, keepdims=True))
    act = np.asarray(traj.action)
    chosen = np.take_along_axis(logp, act[..., None], -1)[..., 0]
    ent = -(np.exp(logp) * logp).sum(-1).mean()
    adv = g - values[:7]
    ref = -(chosen * adv).mean() + 0.5 * (adv**2).mean() - 0.01 * ent
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(aux["entropy"]), ent, rtol=1e-5)


def test_torso_width_is_the_authors_and_a_config_field():
    """Dense256 on Catch (10x5x1 board), Dense32 on the gridworlds (6x8x3), or A2CConfig.hidden."""
    from meta_train.a2c import Agent

    def torso(**kw):
        shapes = jax.eval_shape(Agent(A2CConfig(**kw)).init_params, jax.random.key(0))
        return shapes["params"]["torso"]["kernel"]

    assert torso(task="catch").shape == (50, 256)
    assert torso(task="small_dense_short").shape == (144, 32)
    assert torso(task="catch", hidden=64).shape == (50, 64)
    with pytest.raises(ValueError, match="hidden"):
        A2CConfig(task="catch", hidden=0)


def test_a2c_with_adam_learns_catch():
    train = make_train(A2CConfig(task="catch", num_updates=1000), optax.adam(3e-3))
    _, m = jax.vmap(train)(jax.random.split(jax.random.key(0), 4))
    ret = np.asarray(m["episode_return"])
    # a random policy catches 1 ball in 5: return about -0.6
    assert ret[:, :50].mean() < -0.2 and ret[:, -100:].mean() > 0.2


# ---- pipeline training ---------------------------------------------------------------------

CONFIG = preset(
    "smoke", tasks=("small_dense_short",), units_per_task=2, meta_steps=3, max_nonfinite=2
)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline(CONFIG)  # compiled once, shared by the run tests


def _meta(path):
    return optim4rl.load_meta_params(path)


def test_run_resume_is_identical_and_nan_guard(pipeline, tmp_path):
    full = train(CONFIG, tmp_path / "full", pipeline=pipeline, progress=False)
    part = tmp_path / "part"
    train(CONFIG, part, pipeline=pipeline, progress=False, stop_after=2)
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 2
    assert not (part / META_PARAMS).exists()  # the name of a finished result: not yet
    resumed = train(CONFIG, part, resume=True, pipeline=pipeline, progress=False)
    for a, b in zip(
        jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert (part / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()

    meta, header = _meta(part / META_PARAMS)
    prov = header["provenance"]
    assert prov["meta_steps"] == 3 and prov["seed"] == 0 and prov["commit"] and prov["random_init"]
    # what `evaluate` compares with as the run's own random initialisation: a different random
    # draw would be O(1) away from the result, not within 3 Adam steps of it
    init = initial_meta_params(0, CONFIG.kind)
    delta = np.concatenate(
        [
            np.ravel(np.asarray(a) - np.asarray(b))
            for a, b in zip(
                jax.tree_util.tree_leaves(meta), jax.tree_util.tree_leaves(init), strict=True
            )
        ]
    )
    # Adam moves each coordinate by at most about meta_lr per step
    assert 0 < np.abs(delta).max() <= 3 * CONFIG.meta_lr * 1.01
    records = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2] and all(r["finite"] for r in records)

    with pytest.raises(UsageError, match="already holds a run; add --resume"):
        train(CONFIG, part, pipeline=pipeline, progress=False)
    # in the same test so that pytest-xdist workers do not compile the pipeline twice
    check_nonfinite_meta_gradients_stop_the_run(pipeline, tmp_path / "nan")


def check_nonfinite_meta_gradients_stop_the_run(pipeline, tmp_path):
    init = optim4rl.init_meta_params(jax.random.key(0), "optim4rl")
    huge = jax.tree_util.tree_map(lambda x: x * 1e6, init)  # exp(o) overflows: inf / inf
    with pytest.raises(NonFiniteMetaGradient, match="2 non-finite meta-gradients in a row"):
        train(CONFIG, tmp_path, pipeline=pipeline, progress=False, init_meta_params=huge)
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["finite"] for r in records] == [False, False]
    template = jax.device_get(pipeline.init())
    state, header = load_checkpoint(tmp_path / CHECKPOINT, template)
    assert header["step"] == 0 and int(state.nonfinite) == 0
    for leaf in jax.tree_util.tree_leaves(state):
        assert np.all(np.isfinite(np.asarray(leaf, np.float64)))


def test_cli_rejects_bad_options_before_compute(tmp_path, capsys):
    assert cli(["--preset", "smoke", "--tasks", "small_dense_shrt", "--out", str(tmp_path)]) == 2
    assert "unknown task 'small_dense_shrt'" in capsys.readouterr().err
    assert cli(["--preset", "smoke", "--reset-interval", "-1", "--out", str(tmp_path)]) == 2
    assert "reset_interval must be a positive integer" in capsys.readouterr().err
    assert (
        cli(["--preset", "smoke", "--resume", "--out", str(tmp_path / "none")]) == 2
    )  # a usage error, as every other
    assert "--resume: no checkpoint in" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown config keys"):
        MetaTrainConfig.from_json({"unit_per_task": 3})


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    from meta_train.config import preset
    from meta_train.pipeline import Pipeline, make_mesh
    from meta_train.__main__ import parse_train
    assert len(jax.devices()) == 4
    try:
        parse_train(["--preset", "smoke", "--units", "6"])
        raise SystemExit("expected an error for 6 units on 4 devices")
    except ValueError as err:
        assert "divisible" in str(err), err
    cfg = preset("smoke", tasks=("catch",), kind="lin", units_per_task=4, rollout_len=5, inner_steps=1)
    key = jax.random.key(3)
    out = {}
    for name, mesh in (("one", None), ("four", make_mesh())):
        p = Pipeline(cfg, mesh)
        state = p.init(jax.random.key(0))
        grad, units, _ = jax.jit(p.meta_gradient)(state, key)
        out[name] = (jax.device_get(grad), jax.device_get(units))
        if mesh is not None:
            leaf = jax.tree_util.tree_leaves(units)[0]
            assert len(leaf.sharding.device_set) == 4, leaf.sharding
    g1, g4 = (jax.tree_util.tree_leaves(out[k][0]) for k in ("one", "four"))
    assert max(float(np.abs(a).max()) for a in g1) > 0
    for a, b in zip(g1, g4, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-7)
    for a, b in zip(*(jax.tree_util.tree_leaves(out[k][1]) for k in ("one", "four")), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    print("SHARDED_OK")
    """
)


def test_sharded_meta_gradient_equals_single_device():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags}
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]


CHAIN_RULE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, optax
    from meta_train.config import preset
    from meta_train.pipeline import Pipeline
    assert jax.config.jax_enable_x64
    tree, f64 = jax.tree_util, lambda t: jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, t)
    dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(tree.tree_leaves(a), tree.tree_leaves(b)))
    cfg = preset("smoke", tasks=("small_dense_short",), units_per_task=2, rollout_len=5,
                 inner_steps=1, agent_lr=0.1)
    p = Pipeline(cfg)
    state = p.init(jax.random.key(0))
    agent, phi, u = p.agents[0], f64(state.meta_params), state.units[0]
    units = u._replace(params=f64(u.params), opt_state=f64(u.opt_state))
    key = jax.random.key(5)
    grad = jax.grad(lambda m: p.task_loss(m, units, agent, key)[0])(phi)

    @jax.jit
    def inner(m, unit, k):  # theta_1 = theta_0 + update(g_0); g_0 does not depend on phi
        params, opt_state, env = unit
        k0, k1 = jax.random.split(k, 2)
        traj, env = agent.rollout(params, env, k0)
        g, _ = jax.grad(agent.loss, has_aux=True)(params, traj, env.obs)
        update, _ = p._learned(m).update(g, opt_state, params)
        theta = optax.apply_updates(params, update)
        traj, env = agent.rollout(theta, env, k1)
        return theta, traj, env.obs

    leaves, tdef = tree.tree_flatten(phi)
    ks = jax.random.split(jax.random.key(1), len(leaves))
    v = tdef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(ks, leaves)])
    eps, ref = 1e-6, 0.0
    for j, k in enumerate(jax.random.split(key, cfg.units_per_task)):
        unit = tree.tree_map(lambda x: x[j], units)
        theta, traj, obs = inner(phi, unit, k)
        dl = jax.grad(lambda t: agent.loss(t, traj, obs)[0])(theta)
        plus, minus = (inner(tree.tree_map(lambda a, b: a + s * eps * b, phi, v), unit, k)[0]
                       for s in (1, -1))
        ref += dot(dl, tree.tree_map(lambda a, b: (a - b) / (2 * eps), plus, minus))
    ref, got = float(ref / cfg.units_per_task), float(dot(grad, v))
    assert abs(ref) > 1e-4 and abs(got - ref) <= 1e-6 * abs(ref), (got, ref)
    print("CHAIN_OK", got, ref)
    """
)


def test_meta_gradient_matches_the_chain_rule_in_float64():
    """The meta-gradient (vmap over units, scan and remat over inner updates, the learned
    optimizer's backward pass) along a random direction v, against the chain rule
    <dL/dtheta_1, (theta_1(phi + eps v) - theta_1(phi - eps v)) / 2 eps> with one inner update,
    where the update is differenced, not differentiated. (Differencing the meta-loss itself would
    not do: A2C's targets are stop_gradient constants that a difference still moves.)"""
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHAIN_RULE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "CHAIN_OK" in proc.stdout, proc.stderr[-3000:]


def test_cli_meta_trains_another_kind(tmp_path):
    out = tmp_path / "lin"
    args = ["--preset", "smoke", "--kind", "lin", "--steps", "1", "--no-progress"]
    assert cli([*args, "--tasks", "catch", "--out", str(out)]) == 0
    params, header = optim4rl.load_meta_params(out / META_PARAMS, "lin")
    assert header["kind"] == "lin" and header["provenance"]["meta_steps"] == 1
    with pytest.raises(optim4rl.CheckpointError, match="lin"):
        optim4rl.load_meta_params(out / META_PARAMS, "optim4rl")


def test_logged_return_is_the_authors_episode_average():
    """finished_episodes + window_returns against a loop over steps written from the authors'
    definition: per window, the mean return of the episodes that finished inside it."""
    from meta_train.a2c import finished_episodes, window_returns

    rng = np.random.default_rng(0)
    updates, T, E = 12, 5, 3
    reward = rng.integers(-1, 2, size=(updates, T, E)).astype(np.float32)
    done = rng.random((updates, T, E)) < 0.15
    running = np.zeros(E, np.float32)
    totals, counts, lasts, last = [], [], [], np.zeros(E)
    per_window = {0: [], 1: [], 2: []}  # windows of 4 updates
    for u in range(updates):
        t, c = finished_episodes(jnp.asarray(running), jnp.asarray(reward[u]), jnp.asarray(done[u]))
        totals.append(float(t))
        counts.append(float(c))
        for step in range(T):
            running = running + reward[u, step]
            for e in np.flatnonzero(done[u, step]):
                per_window[u // 4].append(running[e])
                last[e] = running[e]
            running = np.where(done[u, step], 0.0, running)
        lasts.append(last.mean())
    got = window_returns(
        np.array(totals), np.array(counts), np.array(lasts), np.array([0, 4, 8, 12])
    )
    want = [np.mean(v) if v else lasts[4 * w + 3] for w, v in per_window.items()]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert sum(counts) == done.sum()


# ---- evaluate / baselines ------------------------------------------------------------------

# one tiny protocol for the evaluate / baselines tests: Catch (about two episodes end per update,
# so scores have many logged points), 1 env, 30 updates (30 evaluations of one update each), 2
# evaluation seeds 0, 1 and 2 tuning seeds 1000, 1001 (the smoke preset's)
TINY = ["--preset", "smoke", "--tasks", "catch", "--updates", "30", "--no-progress"]
TINY_UPDATES, NAN_FROM = 30, 8


def nan_after(inner: optax.GradientTransformation, k: int) -> optax.GradientTransformation:
    """`inner`, except that its updates from the (k+1)-th on are NaN: the agent diverges."""

    def init(params):
        return inner.init(params), jnp.zeros((), jnp.int32)

    def update(grads, state, params=None):
        inner_state, count = state
        updates, inner_state = inner.update(grads, inner_state, params)
        updates = jax.tree_util.tree_map(lambda u: jnp.where(count >= k, jnp.nan, u), updates)
        return updates, (inner_state, count + 1)

    return optax.GradientTransformation(init, update)


def authors_score(metrics: dict, seed: int, updates: int) -> float:
    """The authors' final score by hand from `make_train`'s per-update metrics: the mean of the
    last 20 logged returns, one per update (of the first `updates`) in which an episode ended."""
    total = np.asarray(metrics["episode_return_sum"])[seed, :updates]
    count = np.asarray(metrics["episodes"])[seed, :updates]
    points = total[count > 0] / count[count > 0]
    return float(points[-20:].mean())


@pytest.fixture(scope="module")
def baselines_run(tmp_path_factory):
    """`python -m meta_train baselines` on TINY with Adam and, under the name rmsprop, Adam that
    diverges after NAN_FROM updates, both at lr 1e-2 (one candidate each)."""
    from meta_train import protocol

    out = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(protocol.OPTIMIZERS, "rmsprop", lambda lr: nan_after(optax.adam(lr), NAN_FROM))
        argv = ["baselines", *TINY, "--optimizers", "adam", "rmsprop", "--lrs", "1e-2"]
        assert cli([*argv, "--out", str(out)]) == 0
    return out


def test_baselines_score_is_the_authors_and_a_diverged_seed_keeps_its_last(baselines_run):
    """The evaluation-seed scores of a real `baselines` run against the authors' score computed
    by hand from `make_train`'s per-update metrics (same config, same keys); the diverging
    optimizer's seeds are flagged, counted, and keep their score after its NAN_FROM finite
    updates."""
    payload = json.loads((baselines_run / "baselines.json").read_text())
    header, catch = payload["header"], payload["results"]["catch"]
    assert header["evaluation_seeds"] == [0, 1] and header["tuning_seeds"] == [1000, 1001]
    config = A2CConfig(task="catch", num_updates=TINY_UPDATES, grad_clip=1.0)
    _, metrics = jax.vmap(make_train(config, optax.adam(1e-2)))(
        jax.vmap(jax.random.key)(jnp.arange(2))
    )
    adam, bad = catch["adam"], catch["rmsprop"]
    assert adam["seeds"] == bad["seeds"] == [0, 1] and adam["lr"] == 1e-2
    want = [authors_score(metrics, s, TINY_UPDATES) for s in (0, 1)]
    np.testing.assert_allclose(adam["scores"], want, rtol=1e-5)
    assert adam["diverged"] == [] and adam["n"] == 2
    # diverged: both seeds flagged and counted, each held at its score after NAN_FROM updates
    assert bad["diverged"] == [0, 1] and bad["n"] == 2 and len(bad["messages"]) == 2
    want_bad = [authors_score(metrics, s, NAN_FROM) for s in (0, 1)]
    np.testing.assert_allclose(bad["scores"], want_bad, rtol=1e-5)
    np.testing.assert_allclose(bad["mean"], np.mean(want_bad), rtol=1e-5)
    curves = np.asarray(bad["curves"])
    assert curves.shape == (2, TINY_UPDATES) and np.all(curves[:, NAN_FROM:] == curves[:, [-1]])
    md = (baselines_run / "baselines.md").read_text()
    assert "| catch | rmsprop | 0.01 | 1" in md and "| 2 of 2 (seeds 0, 1) |" in md
    # the random policy is the floor of every claim
    claims = {(c["a"], c["b"]) for c in payload["comparison"]["claims"]}
    assert {("adam", "random"), ("rmsprop", "random")} <= claims


def test_evaluate_chooses_on_tuning_seeds_and_reports_fresh_ones(baselines_run, tmp_path):
    """Each swept family's lr is the best mean over its tuning-seed scores (recomputed here with
    numpy from eval.json's tuning table); the results are on other seeds, and equal a direct
    driver run of the chosen variant; Adam's one candidate comes from baselines.json."""
    from meta_train.a2c import make_agent
    from optim4rl.runtime import driver

    ckpt = tmp_path / "opt.msgpack"
    meta = optim4rl.init_meta_params(jax.random.key(3), "optim4rl")
    optim4rl.save_meta_params(ckpt, meta, "optim4rl", reward_scale={"catch": 10.0})
    argv = ["evaluate", str(ckpt), *TINY, "--lr", "3e-3", "3e-2"]
    no_adam = tmp_path / "rmsprop_only.json"
    no_adam.write_text(json.dumps({"results": {"catch": {"rmsprop": {"lr": 0.01}}}}))
    assert cli([*argv, "--baselines", str(no_adam), "--out", str(tmp_path / "ev")]) == 2
    assert not (tmp_path / "ev").exists()
    baselines = str(baselines_run / "baselines.json")
    assert cli([*argv, "--baselines", baselines, "--out", str(tmp_path / "ev")]) == 0
    payload = json.loads((tmp_path / "ev" / "eval.json").read_text())
    header, catch = payload["header"], payload["results"]["catch"]
    evaluation, tuning = header["evaluation_seeds"], header["tuning_seeds"]
    assert evaluation == [0, 1] and tuning == [1000, 1001] and not set(evaluation) & set(tuning)
    assert list(catch) == ["learned", "learned_init", "adam", "random"]
    for name in ("learned", "learned_init"):
        r = catch[name]
        assert r["candidates"] == [3e-3, 3e-2] and r["reward_scale"] == 10.0
        assert all(t["seeds"] == tuning for t in r["tuning"].values())
        lrs = [float(k) for k in r["tuning"]]
        means = [np.mean(t["scores"]) for t in r["tuning"].values()]
        assert r["lr"] == lrs[int(np.argmax(means))] and r["seeds"] == evaluation
    adam = catch["adam"]
    assert adam["lr"] == 1e-2 and adam["candidates"] == [1e-2] and adam["tuning"] == {}
    assert adam["reward_scale"] == 1.0 and "tuning seeds 1000, 1001" in adam["note"]
    assert catch["random"]["lr"] == 0.0 and catch["random"]["reward_scale"] == 1.0
    # the reported scores of learned: a direct run of the chosen variant on the evaluation seeds
    lr = catch["learned"]["lr"]
    config = A2CConfig(task="catch", num_updates=TINY_UPDATES, grad_clip=1.0, reward_scale=10.0)
    agent = make_agent(config, optim4rl.learned(lr, meta, "optim4rl", grad_clip=None), 30)
    rows = driver.run(agent, [0, 1], progress=False).rows
    direct = [[r["score"] for r in rows if r["seed"] == s][-1] for s in (0, 1)]
    np.testing.assert_allclose(catch["learned"]["scores"], direct, rtol=1e-6)
    # normalised exactly where the claims separate adam above random
    comparison = payload["comparison"]
    verdict = {(c["a"], c["b"]): c["verdict"] for c in comparison["claims"]}
    assert ("catch" in comparison["normalised"]) == (verdict["adam", "random"] == "adam > random")
    md = (tmp_path / "ev" / "eval.md").read_text()
    assert "1: chosen by" in md and "## Tuning" in md and "**chosen**" in md
    assert (tmp_path / "ev" / "curves.png").exists() and (tmp_path / "ev" / "eval.csv").exists()


def test_evaluation_presets_are_the_authors_and_env_steps_parse():
    """configs/a2c_grid.json: 512 envs, 3e7 env steps per gridworld (2,929 updates), clip 1, the
    six-value lr grid, 10 seeds; Catch (a2c_catch.json): 64 envs, 5e5 steps, no clip."""
    import argparse

    from meta_train import envs
    from meta_train.protocol import EVAL_PRESETS, LR_GRID, eval_config_from_args

    paper = EVAL_PRESETS["paper"]
    assert paper.num_envs == 512 and paper.grad_clip == 1.0
    assert paper.env_steps == {**dict.fromkeys(envs.GRIDWORLD_TASKS, 30_000_000), "catch": 500_000}
    assert paper.updates("big_dense_long") == 2929 and len(paper.seed_ids) == 10
    assert not set(paper.seed_ids) & set(paper.tuning_seed_ids)
    assert LR_GRID == (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    catch = EVAL_PRESETS["catch"]
    assert (catch.num_envs, catch.env_steps["catch"], catch.grad_clip) == (64, 500_000, None)
    args = argparse.Namespace(preset="paper", tasks="small_dense_short,big_sparse_long", seeds=3,
                              tuning_seeds=2, num_envs=None, updates=None, env_steps="3e6,1e6",
                              conv_layout=None)  # fmt: skip
    ec = eval_config_from_args(args)
    assert ec.env_steps == {"small_dense_short": 3_000_000, "big_sparse_long": 1_000_000}
    assert ec.updates("small_dense_short") == 3_000_000 // (20 * 512)
    assert tuple(ec.seed_ids) == (0, 1, 2) and tuple(ec.tuning_seed_ids) == (1000, 1001)
    with pytest.raises(ValueError, match="--env-steps takes N or SMALL,BIG"):
        eval_config_from_args(argparse.Namespace(**{**vars(args), "env_steps": "1,2,3"}))


def test_evaluate_curves_draw_each_familys_mean_and_t_band():
    """curves.png's data through the artists: per family the mean over seeds at each step and a
    band of mean ± t(0.975, n - 1) s / sqrt(n), from a hand-made payload."""
    from scipy import stats as scipy_stats

    from meta_train.evaluate import curves_figure

    y = np.array([[0.0, 1.0, 2.0], [2.0, 2.0, 6.0], [1.0, 0.0, 4.0]])
    payload = {"results": {"catch": {"adam": {"curves": y.tolist(), "curve_steps": [10, 20, 30],
                                              "lr": 1e-3}}}}  # fmt: skip
    fig = curves_figure(payload)
    ax = fig.axes[0]
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(line.get_ydata(), y.mean(0))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = scipy_stats.t.ppf(0.975, 2) * y.std(0, ddof=1) / np.sqrt(3)
    assert band.min() == pytest.approx((y.mean(0) - half).min())
    assert band.max() == pytest.approx((y.mean(0) + half).max())
    assert line.get_label() == "Adam (tuned) (lr 0.001)"


def test_meta_gradient_with_and_without_remat_equals_the_simplest_way():
    """The pipeline's meta-gradient (scan over K inner updates, with remat or unrolled without)
    equals `jax.grad` through a Python loop of the same K updates (the benchmark's reference)."""
    from eval.bench.meta_train import simple_meta_gradient

    config = preset(
        "smoke", tasks=("catch",), kind="lin", units_per_task=2, inner_steps=2, rollout_len=5
    )
    pipeline = Pipeline(config)
    state = pipeline.init()
    key = jax.random.key(3)
    want = simple_meta_gradient(pipeline)(state.meta_params, state.units, key)[0]
    for remat in (True, False):
        p = Pipeline(dataclasses.replace(config, remat=remat))
        assert p.remat is remat
        grad_fn = jax.jit(jax.grad(lambda mp, u, k, p=p: p.task_loss(mp, u, p.agents[0], k)[0]))
        got = grad_fn(state.meta_params, state.units[0], jax.random.fold_in(key, 0))
        for a, b in zip(
            jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
