"""SAC+REDQ losses: masked losses on a packed batch == the same losses trajectory by trajectory;
time-outs bootstrap, terminations do not."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resel import buffer as rb
from resel.losses import (
    NO_BOUNDS,
    alpha_loss,
    clamp_to_bounds,
    critic_loss,
    guard_update,
    policy_loss,
    policy_objective,
    td_targets,
)
from resel.networks import Critic, NetConfig, Policy, Seq

NET = NetConfig(
    pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=3, ffn_dim=16,
    obs_embed=8, act_embed=8, hidden=16, n_critics=4, scan_method="sequential",
)  # fmt: skip
OBS, ACT = 3, 2
LENS = [6, 4, 9, 3, 7]
TERMINATED = {1, 3}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for ep, n in enumerate(LENS):
        obs = rng.normal(size=(n + 1, OBS)).astype(np.float32)
        act = rng.uniform(-1, 1, size=(n, ACT)).astype(np.float32)
        rew = rng.normal(size=n).astype(np.float32)
        term = np.zeros(n, np.float32)
        if ep in TERMINATED:
            term[-1] = 1
        out.append((obs, act, rew, term))
    return out


def _single(obs, act, rew, term) -> rb.Batch:
    """A one-row batch of one trajectory, built by hand: o_0..o_L, no zero steps, no padding."""
    n = act.shape[0]
    pad = lambda x: np.concatenate([x, np.zeros_like(x[:1])])
    shift = lambda x: np.concatenate([np.zeros_like(x[:1]), x[:-1]])
    a, r, t = pad(act), pad(rew), pad(term)
    seq = Seq(obs, shift(obs), shift(a), shift(r)[:, None], np.eye(1, n + 1)[0].astype(np.float32))
    mask = np.r_[np.ones(n), 0.0].astype(np.float32)
    row = lambda x: jnp.asarray(x)[None]
    return rb.Batch(jax.tree.map(row, seq), row(a), row(r), row(t), row(mask), jnp.zeros(1), 0)


@pytest.fixture(scope="module")
def setup():
    data = _data()
    buf = rb.init_buffer(128, 16, OBS, ACT)
    for obs, act, rew, term in data:
        for t in range(act.shape[0]):
            done = jnp.asarray(t == act.shape[0] - 1)
            buf = rb.add(buf, obs[t], act[t], rew[t], jnp.asarray(term[t]), obs[t + 1], done)
    layout = rb.make_layout(15, max(LENS), k_zero=5, max_trajs_per_batch=5, rows=5)
    batch = rb.sample(buf, jax.random.PRNGKey(3), layout)
    assert len({int(i) for i in batch.traj_ids if i >= 0}) >= 2
    policy, critic = Policy(NET, False, ACT), Critic(NET, False, ACT)
    p = policy.init(jax.random.PRNGKey(0), batch.seq)
    # a near-deterministic policy (std = e^-20) so that sampling noise cannot differ by layout
    out = p["params"]["head"]["dense_2"]
    out["bias"] = out["bias"].at[ACT:].set(-25.0)
    out["kernel"] = out["kernel"].at[:, ACT:].set(0.0)
    q = critic.init(jax.random.PRNGKey(1), batch.seq, batch.act)
    q_target = critic.init(jax.random.PRNGKey(2), batch.seq, batch.act)
    return data, batch, policy, critic, p, q, q_target


def test_packed_losses_equal_per_trajectory_losses(setup):
    data, batch, policy, critic, p, q, q_target = setup
    log_alpha = jnp.asarray(-40.0)  # alpha ~ 0: the entropy terms depend on the noise draw
    kw = dict(policy=policy, critic=critic)
    key = jax.random.PRNGKey(7)
    loss, aux = critic_loss(q, p, q_target, log_alpha, batch, key, gamma=0.9, **kw)
    ploss, _ = policy_loss(p, q, aux["embedding"], log_alpha, batch, key, **kw)
    ids = [int(i) for i in batch.traj_ids if i >= 0]
    n = [LENS[i] for i in ids]
    per_q, per_pi = [], []
    for i in ids:
        single = _single(*data[i])
        lq, aux1 = critic_loss(q, p, q_target, log_alpha, single, key, gamma=0.9, **kw)
        lp, _ = policy_loss(p, q, aux1["embedding"], log_alpha, single, key, **kw)
        per_q.append(float(lq))
        per_pi.append(float(lp))
    np.testing.assert_allclose(float(loss), np.dot(per_q, n) / sum(n), rtol=2e-5)
    np.testing.assert_allclose(float(ploss), np.dot(per_pi, n) / sum(n), rtol=2e-5)


def test_terminations_stop_bootstrapping_and_time_outs_do_not(setup):
    data, _, policy, critic, p, _, q_target = setup
    kw = dict(policy=policy, critic=critic)
    for ep in (0, 1):  # 0 ends by time-out, 1 terminates
        obs, act, rew, term = data[ep]
        single = _single(obs, act, rew, term)
        y = td_targets(p, q_target, jnp.asarray(-40.0), single, jax.random.PRNGKey(0), gamma=0.9,
                       **kw)  # fmt: skip
        y0 = td_targets(p, q_target, jnp.asarray(-40.0), single, jax.random.PRNGKey(0), gamma=0.0,
                        **kw)  # fmt: skip
        np.testing.assert_allclose(y0[0, : len(rew)], rew, rtol=1e-6)
        last = len(rew) - 1
        if ep in TERMINATED:
            assert float(y[0, last]) == pytest.approx(float(rew[last]))
        else:
            assert abs(float(y[0, last]) - float(rew[last])) > 1e-3


def _softplus(x):
    return np.logaddexp(0.0, x)


def test_continuous_target_by_hand_with_and_without_the_guard(setup):
    """y_t = r_t + gamma (1 - term_t) clip(min(Q'_i, Q'_j)(o_{t+1}, a'_{t+1}) - alpha logp_{t+1}),
    with a' = tanh(mean + std eps), logp by the change of variables, in float64 numpy."""
    data, batch, policy, critic, _, _, q_target = setup
    p = policy.init(jax.random.PRNGKey(4), batch.seq)  # a stochastic policy (std ~ 1)
    obs, act, rew, term = data[1]  # terminates: its last target does not bootstrap
    single = _single(obs, act, rew, term)
    key, gamma, alpha = jax.random.PRNGKey(8), 0.9, 0.3
    k_pi, k_heads = jax.random.split(key)
    mean, log_std = (np.asarray(v[0], np.float64) for v in policy.apply(p, single.seq))
    eps = np.asarray(jax.random.normal(k_pi, (1,) + mean.shape), np.float64)[0]
    u = mean + np.exp(log_std) * eps
    logp = np.sum(
        -0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - 2 * (np.log(2) - u - _softplus(-2 * u)),
        axis=-1,
    )
    emb = critic.apply(q_target, single.seq, method=critic.embed)
    a_next = jnp.asarray(np.tanh(u), jnp.float32)[None]
    q = np.asarray(critic.apply(q_target, single.seq.obs, a_next, emb, method=critic.q)[0])
    heads = np.asarray(jax.random.choice(k_heads, NET.n_critics, (2,), replace=False))
    v = q[:, heads].min(axis=1) - alpha * logp  # (L + 1,): v[t] belongs to o_t
    n = len(rew)
    kw = dict(policy=policy, critic=critic, gamma=gamma)
    y = td_targets(p, q_target, jnp.log(alpha), single, key, **kw)
    np.testing.assert_allclose(y[0, :n], rew + gamma * (1 - term) * v[1:], rtol=1e-4, atol=1e-4)
    lo, hi = np.quantile(v[1:], [0.3, 0.7])
    assert (v[1:] < lo).any() and (v[1:] > hi).any()  # the guard binds on both sides
    bounds = jnp.asarray([lo, hi], jnp.float32)
    y = td_targets(p, q_target, jnp.log(alpha), single, key, bounds=bounds, **kw)
    ref = rew + gamma * (1 - term) * np.clip(v[1:], lo, hi)
    np.testing.assert_allclose(y[0, :n], ref, rtol=1e-4, atol=1e-4)


def test_guard_range_and_clamp_by_hand():
    d = 1 - 1e-3
    b = jnp.asarray(NO_BOUNDS, jnp.float32)
    v = jnp.asarray([-1e6, 3.0, 1e6])
    np.testing.assert_array_equal(clamp_to_bounds(v, b), v)  # nothing seen yet: no clamp
    # padding (mask 0) counts as a 0 target, as in the release's range of target * mask
    b = guard_update(b, jnp.asarray([[1.0, -2.0, 3.0]]), jnp.asarray([[1.0, 1.0, 0.0]]), d)
    np.testing.assert_allclose(b, [-2.0, 1.0], rtol=1e-6)
    b = guard_update(b, jnp.asarray([[5.0, 0.5]]), jnp.ones((1, 2)), d)
    np.testing.assert_allclose(b, [-2.0 * d + 0.5 * (1 - d), 5.0], rtol=1e-6)
    b = guard_update(b, jnp.asarray([[2.0, 3.0]]), jnp.ones((1, 2)), d)  # the range decays inward
    np.testing.assert_allclose(b, [(-2.0 * d + 0.5 * (1 - d)) * d + 2 * (1 - d), 5 * d + 3 * (1 - d)],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(clamp_to_bounds(v, b), [b[0], 3.0, b[1]], rtol=1e-6)


def test_alpha_gradient_moves_entropy_towards_its_target():
    """dL/dlog_alpha = -(mean logp + target): alpha falls while the entropy -mean(logp) is above
    the target and rises while it is below."""
    logp = jnp.asarray([[-0.2, -0.8, 5.0]])
    mask = jnp.asarray([[1.0, 1.0, 0.0]])  # entropy of the real steps: 0.5
    for target, sign in ((-1.0, 1.0), (2.0, -1.0)):
        g = jax.grad(alpha_loss)(jnp.asarray(0.3), logp, mask, target)
        assert float(g) == pytest.approx(-(-0.5 + target))
        assert np.sign(float(g)) == sign  # gradient descent: log alpha -= lr * g


def test_critic_gradient_ignores_padding_and_zero_steps(setup):
    _, batch, policy, critic, p, q, q_target = setup
    kw = dict(policy=policy, critic=critic, gamma=0.9)
    g = jax.grad(lambda a: critic_loss(q, p, q_target, jnp.asarray(-40.0),
                                       batch._replace(act=a), jax.random.PRNGKey(1), **kw)[0])(
        batch.act
    )  # fmt: skip
    outside = np.asarray(batch.mask) == 0
    assert float(jnp.abs(g[outside]).max()) == 0.0
    assert float(jnp.abs(g[~outside]).max()) > 0.0


def test_discrete_losses_packed_equal_per_trajectory_and_target_by_hand():
    """Categorical policy: exact expectations, so no noise trick is needed."""
    data = [(o, jax.nn.one_hot(np.argmax(a, -1), ACT), r, t) for o, a, r, t in _data(1)]
    buf = rb.init_buffer(128, 16, OBS, ACT)
    for obs, act, rew, term in data:
        for t in range(act.shape[0]):
            done = jnp.asarray(t == act.shape[0] - 1)
            buf = rb.add(buf, obs[t], act[t], rew[t], jnp.asarray(term[t]), obs[t + 1], done)
    layout = rb.make_layout(15, max(LENS), k_zero=5, max_trajs_per_batch=5, rows=5)
    batch = rb.sample(buf, jax.random.PRNGKey(4), layout)
    policy, critic = Policy(NET, False, ACT, True), Critic(NET, False, ACT, True)
    p = policy.init(jax.random.PRNGKey(0), batch.seq)
    q = critic.init(jax.random.PRNGKey(1), batch.seq, batch.act)
    qt = critic.init(jax.random.PRNGKey(2), batch.seq, batch.act)
    assert "action_encoder" not in q["params"]
    la, key, kw = jnp.log(0.3), jax.random.PRNGKey(5), dict(policy=policy, critic=critic)
    loss, aux = critic_loss(q, p, qt, la, batch, key, gamma=0.9, **kw)
    ploss, _ = policy_loss(p, q, aux["embedding"], la, batch, key, **kw)
    ids = [int(i) for i in batch.traj_ids if i >= 0]
    n = [LENS[i] for i in ids]
    per_q, per_pi = [], []
    for i in ids:
        single = _single(*(np.asarray(x) for x in data[i]))
        lq, aux1 = critic_loss(q, p, qt, la, single, key, gamma=0.9, **kw)
        per_q.append(float(lq))
        per_pi.append(float(policy_loss(p, q, aux1["embedding"], la, single, key, **kw)[0]))
    np.testing.assert_allclose(float(loss), np.dot(per_q, n) / sum(n), rtol=2e-5)
    np.testing.assert_allclose(float(ploss), np.dot(per_pi, n) / sum(n), rtol=2e-5)
    # y_t by hand for one trajectory: r + 0.9 (1 - term) sum_a pi(a) (min of 2 heads - alpha logpi)
    single = _single(*(np.asarray(x) for x in data[0]))
    y = td_targets(p, qt, la, single, key, gamma=0.9, **kw)
    logits = np.asarray(policy.apply(p, single.seq)[0][0], np.float64)
    logpi = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    emb = critic.apply(qt, single.seq, method=critic.embed)
    q_all = np.asarray(critic.apply(qt, single.seq.obs, emb, method=critic.q_all)[0], np.float64)
    heads = np.asarray(jax.random.choice(jax.random.split(key)[1], NET.n_critics, (2,), False))
    v = (np.exp(logpi) * (q_all[:, heads].min(1) - 0.3 * logpi)).sum(-1)
    rew, term = np.asarray(data[0][2]), np.asarray(data[0][3])
    np.testing.assert_allclose(y[0, : len(rew)], rew + 0.9 * (1 - term) * v[1:], rtol=1e-4)


def test_one_policy_forward_serves_targets_and_policy_gradient(setup):
    """The update's shared forward pass: TD targets from precomputed policy outputs, and the
    policy gradient as the VJP of `policy_objective`, equal the losses that run the policy."""
    _, batch, policy, critic, p, q, q_target = setup
    kw = dict(policy=policy, critic=critic)
    log_alpha, key = jnp.asarray(-1.0), jax.random.PRNGKey(5)
    out, vjp = jax.vjp(lambda pp: policy.apply(pp, batch.seq), p)
    y = td_targets(p, q_target, log_alpha, batch, key, gamma=0.9, **kw)
    y_shared = td_targets(None, q_target, log_alpha, batch, key, gamma=0.9, policy_out=out, **kw)
    np.testing.assert_array_equal(np.asarray(y_shared), np.asarray(y))
    emb = critic.apply(q, batch.seq, method=critic.embed)
    (loss, _), grads = jax.value_and_grad(policy_loss, has_aux=True)(
        p, q, emb, log_alpha, batch, key, **kw
    )
    (loss_shared, _), out_grads = jax.value_and_grad(policy_objective, has_aux=True)(
        out, q, emb, log_alpha, batch, key, critic=critic, discrete=policy.discrete
    )
    np.testing.assert_allclose(float(loss_shared), float(loss), rtol=1e-6)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads))
    for a, b in zip(jax.tree.leaves(vjp(out_grads)[0]), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
