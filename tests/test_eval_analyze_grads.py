"""grad-distribution (Optim4RL Fig. 1): the collected gradients are the gradients of the updates
that were applied (recomputed with jax.grad from an independent loss), the statistics match
numpy/scipy on the collected array, the CLI writes its files and rejects bad input."""

from __future__ import annotations

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from eval.analyze import grad_distribution as gd
from meta_train.gridworld import MOVES

TINY = replace(
    gd.PRESETS["cpu"],
    task="small_dense_short",
    num_envs=2,
    rl_updates=6,
    sl_updates=6,
    sl_dataset=64,
    sl_batch=8,
    window=2,
    seeds=2,
)


def a2c_loss_reference(net, params, obs, action, reward, done, last_obs, c):
    """The A2C loss written out with a Python loop over time (spec section 3)."""
    logits, values = net.apply(params, jnp.concatenate([obs, last_obs[None]], 0))
    reward = reward * c.reward_scale
    v = jax.lax.stop_gradient(values)
    T = obs.shape[0]
    g = v[T]
    returns = [None] * T
    for t in reversed(range(T)):
        g = reward[t] + c.gamma * (1.0 - done[t]) * ((1 - c.lam) * v[t + 1] + c.lam * g)
        returns[t] = g
    returns = jnp.stack(returns)
    logp_all = logits[:T] - jax.scipy.special.logsumexp(logits[:T], axis=-1, keepdims=True)
    logp = jnp.sum(logp_all * jax.nn.one_hot(action, logits.shape[-1]), -1)
    adv = returns - v[:T]
    entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, -1)
    value_err = (returns - values[:T]) ** 2
    return -jnp.mean(logp * adv) + c.value_coef * value_err.mean() - c.entropy_coef * entropy.mean()


@pytest.fixture(scope="module")
def rl_run():
    agent, init, step = gd.make_rl(TINY, debug=True)
    col = gd.collect(init, step, jax.random.key(3), 6, 2, 2, progress=False)
    return agent, col


@pytest.fixture(scope="module")
def sl_run():
    data = gd.make_dataset(TINY.task, TINY.sl_dataset, jax.random.key(4))
    net, init, step = gd.make_sl(TINY, data, debug=True)
    col = gd.collect(init, step, jax.random.key(5), 6, 2, 2, progress=False)
    return data, net, col


def test_rl_gradients_equal_direct_jax_grad(rl_run):
    agent, col = rl_run
    assert col.windows == (0, 2, 4) and col.grads.shape[:3] == (3, 2, 2)
    c = agent.config
    opt = gd.rl_optimizer(TINY)
    ref_grad = jax.jit(
        jax.grad(lambda q, *batch: a2c_loss_reference(agent.net, q, *batch, c)),
    )
    for phase in range(3):
        params, traj, last_obs = col.extras[phase]
        for seed in range(2):
            for i in range(2):
                p = jax.tree.map(lambda x, s=seed, i=i: x[s, i], params)
                batch = [x[seed, i] for x in (traj.obs, traj.action, traj.reward)]
                done = traj.done[seed, i].astype(jnp.float32)
                flat = ravel_pytree(ref_grad(p, *batch, done, last_obs[seed, i]))[0]
                np.testing.assert_allclose(col.grads[phase, seed, i], flat, rtol=2e-4, atol=1e-7)
            # the collected gradient is the one that was applied: params_1 = params_0 + update
            p0 = jax.tree.map(lambda x, s=seed: x[s, 0], params)
            p1 = jax.tree.map(lambda x, s=seed: x[s, 1], params)
            g0 = ravel_pytree(p0)[1](jnp.asarray(col.grads[phase, seed, 0]))
            if phase == 0:  # optimizer state is known only at the start: fresh
                upd, _ = opt.update(g0, opt.init(p0), p0)
                np.testing.assert_allclose(
                    ravel_pytree(optax.apply_updates(p0, upd))[0], ravel_pytree(p1)[0], atol=1e-6
                )
            assert not np.allclose(ravel_pytree(p0)[0], ravel_pytree(p1)[0])
    # different seeds see different data: their gradients differ
    assert not np.allclose(col.grads[0, 0], col.grads[0, 1])
    assert col.metrics["episode_return"].shape == (2, 6)


def test_supervised_gradients_equal_direct_jax_grad(sl_run):
    data, net, col = sl_run

    def ce(q, xb, yb):
        logits, _ = net.apply(q, xb)
        z = logits - logits.max(-1, keepdims=True)
        logp = z - jnp.log(jnp.exp(z).sum(-1, keepdims=True))
        return -jnp.mean(logp[jnp.arange(yb.size), yb])

    ref_grad = jax.jit(jax.grad(ce))
    for phase in range(3):
        params, x, y = col.extras[phase]
        for seed in range(2):
            for i in range(2):
                p = jax.tree.map(lambda a, s=seed, i=i: a[s, i], params)
                grads = ref_grad(p, x[seed, i], y[seed, i])["params"]
                np.testing.assert_array_equal(np.asarray(grads["value"]["kernel"]), 0.0)
                del grads["value"]
                flat = ravel_pytree({"params": grads})[0]
                np.testing.assert_allclose(col.grads[phase, seed, i], flat, rtol=2e-4, atol=1e-7)
    P = sum(x.size for x in jax.tree.leaves(gd.sl_params(jax.tree.map(lambda a: a[0, 0], params))))
    assert col.grads.shape == (3, 2, 2, P)
    assert np.isfinite(col.metrics["loss"]).all()


def test_dataset_labels_are_the_direction_to_object_0(sl_run):
    (xs, ys), _, _ = sl_run
    xs, ys = np.asarray(xs), np.asarray(ys)
    k = xs.shape[-1] - 1  # channel k is the agent, channel 0 the first (+1) object
    for obs, label in zip(xs, ys, strict=True):
        (agent,) = np.argwhere(obs[..., k] == 1)
        (target,) = np.argwhere(obs[..., 0] == 1)
        d = np.sign(target - agent)
        assert tuple(np.asarray(MOVES)[label]) == tuple(d)
    assert set(ys.tolist()) <= set(range(1, 9)) and len(set(ys.tolist())) > 3  # never "stay"


def test_statistics_against_numpy(rl_run):
    from scipy.stats import wasserstein_distance

    _, col = rl_run
    g = col.grads
    x = np.log10(np.abs(g.astype(np.float64)) + 1e-8)
    res = gd.summarize(g)
    for p, name in enumerate(gd.PHASES):
        st = res["phases"][name]
        xp = x[p].ravel()
        counts, _ = np.histogram(np.clip(xp, -9, 5), bins=np.arange(-9, 5.25, 0.5))
        assert st["histogram"]["counts"] == counts.tolist()
        assert sum(st["histogram"]["counts"]) == xp.size == st["coordinates"]
        np.testing.assert_allclose(np.sum(np.array(st["histogram"]["density"]) * 0.5), 1.0)
        q = np.quantile(xp, [0.05, 0.25, 0.5, 0.75, 0.95])
        assert [st["quantiles"][k] for k in ("q05", "q25", "q50", "q75", "q95")] == list(q)
        assert st["iqr"] == pytest.approx(q[3] - q[1])
        assert st["frac_zero"] == pytest.approx(np.mean(g[p] == 0))
        nz = xp[g[p].ravel() != 0]
        assert st["nonzero_iqr"] == pytest.approx(np.subtract(*np.quantile(nz, [0.75, 0.25])))
    for key, (i, j) in {"start_middle": (0, 1), "middle_end": (1, 2), "start_end": (0, 2)}.items():
        ref = wasserstein_distance(x[i].ravel(), x[j].ravel())
        assert res["w1"][key] == pytest.approx(ref, rel=1e-9)
    # unequal sizes and a known shift: W1 of a sample and the sample + 0.3 is 0.3
    a = np.random.default_rng(0).normal(size=501)
    assert gd.wasserstein1(a, a + 0.3) == pytest.approx(0.3)
    assert gd.wasserstein1(a, a[:200]) == pytest.approx(wasserstein_distance(a, a[:200]))


def test_histogram_counts_values_outside_the_bins():
    h = gd.histogram(np.array([-10.0, -8.0, 0.1, 4.9, 7.0]))
    counts = np.array(h["counts"])
    assert h["outside"] == 2 and counts.sum() == 5
    assert counts[0] == 1 and counts[-1] == 2  # clipped into the end bins
    assert counts[np.searchsorted(gd.EDGES, -8.0, side="right") - 1] == 1


def test_phase_windows():
    assert gd.phase_windows(750, 25) == (0, 375, 725)
    assert gd.phase_windows(2900, 100) == (0, 1400, 2800)


def test_cli_writes_outputs(tmp_path, capsys):
    out = tmp_path / "gd"
    argv = ["--task", "small_dense_short", "--num-envs", "2", "--updates", "6", "--window", "2"]
    argv += ["--sl-updates", "6", "--sl-dataset", "64", "--sl-batch", "8", "--no-progress"]
    assert gd.main([*argv, "--out", str(out)]) == 0
    for name in ("grad_distribution.png", "grad_distribution.pdf", "grad_distribution.json"):
        assert (out / name).stat().st_size > 0
    res = json.loads((out / "grad_distribution.json").read_text())
    assert res["config"]["rl_updates"] == 6 and res["config"]["task"] == "small_dense_short"
    assert set(res["comparison"]) >= {"nonzero_iqr", "max_w1", "rl_wider", "rl_moves_more"}
    assert res["rl"]["phases"]["start"]["coordinates"] == 2 * res["parameters"]["rl"]
    assert "W1 start-middle" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "big_dense_lng"], "did you mean big_dense_long"),
        (["--task", "catch"], "must be a gridworld"),
        (["--window", "300"], "at least 3 windows"),
        (["--updates", "760"], "multiple of --window=25"),
        (["--num-envs", "0"], "num_envs must be >= 1"),
        (["--rl-lr", "-1"], "rl_lr must be > 0"),
        (["--scale", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_cli_errors(args, message, capsys):
    with pytest.raises(SystemExit) as err:
        gd.main(args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit):
        gd.main(["--out", str(f)])
    assert "is not a folder" in capsys.readouterr().err
