"""RESeL networks: parallel/sequential scans, packing, resets, conv masking, acting == training."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resel.networks import Critic, EnsembleDense, NetConfig, Policy, Seq, tanh_gaussian_sample
from resel.scan import selective_scan

TINY = NetConfig(
    pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=3, ffn_dim=16,
    tf_layers=2, tf_heads=2, tf_window=6, obs_embed=8, act_embed=8, hidden=16, n_critics=4,
)  # fmt: skip
OBS, ACT = 3, 2
LENGTHS = (5, 9, 3)


def _trajectory(key, length):
    k1, k2, k3 = jax.random.split(key, 3)
    obs = jax.random.normal(k1, (length, OBS))
    act = jax.random.uniform(k2, (length, ACT), minval=-1, maxval=1)
    rew = jax.random.normal(k3, (length, 1))
    zero = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])
    start = jnp.zeros(length).at[0].set(1.0)
    return Seq(obs, zero(obs), zero(act), zero(rew), start)


def _pack(trajs, k_zero):
    """One row: each trajectory preceded by k_zero zero steps (start flag on the first of them)."""
    parts, where = [], []
    pos = 0
    for tr in trajs:
        if k_zero:
            z = jax.tree.map(lambda x: jnp.zeros((k_zero,) + x.shape[1:]), tr)
            parts.append(z._replace(start=z.start.at[0].set(1.0)))
            pos += k_zero
        parts.append(tr)
        where.append((pos, pos + tr.obs.shape[0]))
        pos += tr.obs.shape[0]
    row = jax.tree.map(lambda *xs: jnp.concatenate(xs)[None], *parts)
    return row, where


@pytest.fixture(scope="module")
def trajs():
    keys = jax.random.split(jax.random.PRNGKey(0), len(LENGTHS))
    return [_trajectory(k, n) for k, n in zip(keys, LENGTHS, strict=True)]


def _naive_scan(u, dt, A, B, C, D, start):
    u, dt, B, C, start = (np.asarray(x, np.float64) for x in (u, dt, B, C, start))
    A, D = np.asarray(A, np.float64), np.asarray(D, np.float64)
    batch, T, d = u.shape
    h = np.zeros((batch, d, A.shape[1]))
    ys = np.zeros((batch, T, d))
    for t in range(T):
        for b in range(batch):
            h[b] = np.exp(dt[b, t][:, None] * A) * (1 - start[b, t]) * h[b]
            h[b] += (dt[b, t] * u[b, t])[:, None] * B[b, t][None, :]
            ys[b, t] = h[b] @ C[b, t] + D * u[b, t]
    return ys


def test_scan_methods_match_naive_loop():
    ks = jax.random.split(jax.random.PRNGKey(1), 6)
    batch, T, d, n = 2, 37, 5, 4
    u = jax.random.normal(ks[0], (batch, T, d))
    dt = jax.nn.softplus(jax.random.normal(ks[1], (batch, T, d)))
    A = -jnp.exp(jax.random.normal(ks[2], (d, n)))
    B, C = jax.random.normal(ks[3], (2, batch, T, n))
    D = jax.random.normal(ks[4], (d,))
    start = (jax.random.uniform(ks[5], (batch, T)) < 0.15).astype(jnp.float32)
    ref = _naive_scan(u, dt, A, B, C, D, start)
    for method in ("parallel", "sequential", "chunked"):
        y, _ = selective_scan(u, dt, A, B, C, D, start, method=method, chunk=8)
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=method)
    with pytest.raises(ValueError, match="unknown selective-scan method"):
        selective_scan(u, dt, A, B, C, D, start, method="bogus")


def _loop_scan(u, dt, A, B, C, D, start, h0):
    """The recurrence as a Python loop of jnp ops (autodiff reference for the scans' gradients)."""
    h, ys = h0, []
    for t in range(u.shape[1]):
        keep = (1.0 - start[:, t])[:, None, None]
        h = (
            jnp.exp(dt[:, t, :, None] * A) * keep * h
            + (dt[:, t] * u[:, t])[..., None] * B[:, t, None]
        )
        ys.append(jnp.einsum("bdn,bn->bd", h, C[:, t]) + D * u[:, t])
    return jnp.stack(ys, 1), h


def test_scan_gradients_equal_autodiff_of_a_python_loop():
    """The sequential scan's hand-written backward pass (and the other methods' autodiff) against
    jax.grad through the unrolled recurrence, float64, with resets and an initial state."""
    with jax.enable_x64():
        ks = jax.random.split(jax.random.PRNGKey(3), 9)
        batch, T, d, n = 2, 23, 5, 3
        f64 = jnp.float64
        u = jax.random.normal(ks[0], (batch, T, d), f64)
        dt = jax.nn.softplus(jax.random.normal(ks[1], (batch, T, d), f64))
        A = -jnp.exp(jax.random.normal(ks[2], (d, n), f64))
        B, C = jax.random.normal(ks[3], (2, batch, T, n), f64)
        D = jax.random.normal(ks[4], (d,), f64)
        start = (jax.random.uniform(ks[5], (batch, T)) < 0.15).astype(f64)
        h0 = jax.random.normal(ks[6], (batch, d, n), f64)
        wy = jax.random.normal(ks[7], (batch, T, d), f64)
        wh = jax.random.normal(ks[8], (batch, d, n), f64)

        def loss(scan):
            def f(u, dt, A, B, C, D, h0):
                y, h = scan(u, dt, A, B, C, D, start, h0)
                return jnp.sum(y * wy) + jnp.sum(h * wh)

            return jax.grad(f, argnums=tuple(range(7)))(u, dt, A, B, C, D, h0)

        ref = loss(_loop_scan)
        for method in ("sequential", "parallel", "chunked"):
            got = loss(
                lambda *a, method=method: selective_scan(*a[:7], h0=a[7], method=method, chunk=8)
            )
            for name, g, r in zip(["u", "dt", "A", "B", "C", "D", "h0"], got, ref, strict=True):
                np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-9, err_msg=f"{method} d{name}")


def _policy(encoder, method="parallel"):
    cfg = dataclasses.replace(TINY, encoder=encoder, scan_method=method)
    return Policy(cfg, use_reward=True, action_dim=ACT)


def _stepwise(model, params, tr):
    """Acting: single-step recurrence from a zero carry, one trajectory at a time."""
    carry = model.apply(params, 1, method=model.initial_carry)

    def step(carry, inp):  # a lax.scan of single steps: each step sees only its carry
        (mean, _), carry = model.apply(params, jax.tree.map(lambda x: x[None], inp), carry,
                                       method=model.step)  # fmt: skip
        return carry, mean[0]

    return jax.lax.scan(step, carry, tr)[1]


@pytest.mark.parametrize("encoder", ["mamba", "gru", "transformer", "none"])
def test_packed_sequence_equals_stepwise_acting(trajs, encoder):
    model = _policy(encoder)
    row, where = _pack(trajs, k_zero=2)
    params = model.init(jax.random.PRNGKey(2), row)
    mean, _ = model.apply(params, row)
    for tr, (a, b) in zip(trajs, where, strict=True):
        np.testing.assert_allclose(mean[0, a:b], _stepwise(model, params, tr), atol=1e-5)


@pytest.mark.parametrize("method", ["sequential", "chunked"])
def test_mamba_packing_equals_separate_runs(trajs, method):
    model = _policy("mamba", method)
    row, where = _pack(trajs, k_zero=0)  # adjacent trajectories: only the masks separate them
    params = model.init(jax.random.PRNGKey(3), row)
    mean, _ = model.apply(params, row)
    for tr, (a, b) in zip(trajs, where, strict=True):
        alone, _ = model.apply(params, jax.tree.map(lambda x: x[None], tr))
        np.testing.assert_allclose(mean[0, a:b], alone[0], atol=1e-5)


def test_conv_and_state_never_mix_neighbouring_trajectories(trajs):
    """Gradient of the second trajectory's outputs w.r.t. the first trajectory's inputs is 0,
    while within a trajectory the outputs do depend on earlier steps (the mask is not too wide)."""
    model = _policy("mamba")
    row, where = _pack(trajs[:2], k_zero=0)
    params = model.init(jax.random.PRNGKey(4), row)
    (a0, b0), (a1, b1) = where

    def second(obs):
        return model.apply(params, row._replace(obs=obs))[0][0, a1:b1].sum()

    def within(obs):
        return model.apply(params, row._replace(obs=obs))[0][0, b0 - 1].sum()

    g = jax.grad(second)(row.obs)
    assert float(jnp.abs(g[0, a0:b0]).max()) == 0.0
    assert float(jnp.abs(g[0, a1:b1]).max()) > 0.0
    g_in = jax.grad(within)(row.obs)
    assert float(jnp.abs(g_in[0, a0]).max()) > 0.0  # first step reaches the last one


def test_ensemble_dense_equals_separate_layers():
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 7, 6))
    layer = EnsembleDense(3, 4)
    params = layer.init(jax.random.PRNGKey(6), x, True)
    out = layer.apply(params, x, True)
    k, b = params["params"]["kernel"], params["params"]["bias"]
    for i in range(3):
        np.testing.assert_allclose(out[i], x @ k[i] + b[i], atol=1e-5)
    assert not np.allclose(k[0], k[1])  # heads are initialised independently
    xs = jax.random.normal(jax.random.PRNGKey(7), (3, 2, 7, 6))  # one input per member
    out = layer.apply(params, xs, False)
    for i in range(3):
        np.testing.assert_allclose(out[i], xs[i] @ k[i] + b[i], atol=1e-5)
    # the release's Xavier-uniform per member: U(+-sqrt(6 / (fan_in + fan_out))), zero bias
    assert np.abs(k).max() <= np.sqrt(6 / (6 + 4)) and np.abs(k).max() > 0.8 * np.sqrt(6 / 10)
    assert not np.any(b)


def _dense(p, x):
    return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def test_critic_heads_equal_a_numpy_ensemble_mlp(trajs):
    """Q_e = MLP_e([W_o o + b_o, W_a a + b_a, embedding]) for every head e, computed with numpy
    (the embedding itself is checked against step-by-step acting and the Mamba reference)."""
    critic = Critic(TINY, use_reward=False, action_dim=ACT)
    row, _ = _pack(trajs, k_zero=2)
    act = jax.random.uniform(jax.random.PRNGKey(9), row.obs.shape[:-1] + (ACT,), minval=-1)
    params = critic.init(jax.random.PRNGKey(7), row, act)
    q, emb = jax.jit(lambda p: (critic.apply(p, row, act), critic.apply(p, row, method="embed")))(
        params
    )
    q, emb = np.asarray(q, np.float64), np.asarray(emb, np.float64)
    p = params["params"]
    assert set(p) == {"pre_encoder", "context_encoder", "obs_encoder", "action_encoder", "head"}
    assert "last_rew" not in p["pre_encoder"]
    x = np.concatenate(
        [_dense(p["obs_encoder"], np.asarray(row.obs)), _dense(p["action_encoder"], np.asarray(act)),
         emb], axis=-1,
    )  # fmt: skip
    for e in range(TINY.n_critics):
        h = x
        for i in range(TINY.n_hidden + 1):
            layer = {k: v[e] for k, v in p["head"][f"dense_{i}"].items()}
            h = _dense(layer, h)
            h = _elu(h) if i < TINY.n_hidden else h
        np.testing.assert_allclose(q[..., e], h[..., 0], rtol=1e-4, atol=1e-5)
    assert np.std(q, axis=-1).mean() > 1e-3  # the heads differ
    # only some heads (the TD target's 2 drawn ones), in the order asked
    members = jnp.array([TINY.n_critics - 1, 0])
    q_some = critic.apply(params, row.obs, act, jnp.asarray(emb, jnp.float32), members,
                          method="q")  # fmt: skip
    assert q_some.shape == q.shape[:-1] + (2,)
    np.testing.assert_allclose(q_some, q[..., np.asarray(members)], rtol=1e-5, atol=1e-6)


def _mamba_reference(p, x, start, cfg):
    """The Mamba block of docs/resel.md in float64 numpy, one step at a time:
    RMSNorm -> in_proj -> (u, z); u = SiLU(causal depthwise conv within the trajectory);
    dt = softplus(W_dt (W_x u)[:r] + b); B, C = (W_x u)[r:r+n], [r+n:]; A = -exp(A_log);
    h = exp(dt A) (1 - start) h + dt B u; y = C.h + D u; out = x + W_out (y SiLU(z));
    then LayerNorm(W2 GELU(W1 out + b1) + b2 + out). The release's constants, not the config's:
    norm epsilon 1e-8 (smamba BlockList.norm_epsilon) and torch's exact GELU, x Phi(x) with erf;
    no conv when cfg.conv_kernel is 0 (Key-to-Door)."""
    eps = 1e-8
    f = lambda a: np.asarray(a, np.float64)
    silu = lambda v: v / (1 + np.exp(-v))
    softplus = lambda v: np.log1p(np.exp(v))
    gelu = lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2)))
    x, start = f(x), f(start)
    batch, T, _ = x.shape
    d_inner, n, r, k = cfg.expand * cfg.ce_dim, cfg.d_state, cfg.dt_rank, cfg.conv_kernel
    A = -np.exp(f(p["A_log"]))
    out = np.zeros_like(x)
    for b in range(batch):
        h = np.zeros((d_inner, n))
        window = np.zeros((k, d_inner))  # the last k pre-conv inputs of this trajectory
        for t in range(T):
            xt = x[b, t]
            normed = xt / np.sqrt(np.mean(xt**2) + eps) * f(p["norm"]["scale"])
            uz = normed @ f(p["in_proj"]["kernel"])
            u, z = uz[:d_inner], uz[d_inner:]
            if start[b, t]:
                window[:] = 0.0
                h[:] = 0.0
            if k:
                window = np.concatenate([window[1:], u[None]])
                u = silu(f(p["conv_b"]) + np.sum(window * f(p["conv_w"]), axis=0))
            dbc = u @ f(p["x_proj"]["kernel"])
            dt = softplus(dbc[:r] @ f(p["dt_proj"]["kernel"]) + f(p["dt_proj"]["bias"]))
            Bt, Ct = dbc[r : r + n], dbc[r + n :]
            h = np.exp(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = h @ Ct + f(p["D"]) * u
            o = xt + (y * silu(z)) @ f(p["out_proj"]["kernel"])
            ff = gelu(o @ f(p["ffn_in"]["kernel"]) + f(p["ffn_in"]["bias"]))
            ff = ff @ f(p["ffn_out"]["kernel"]) + f(p["ffn_out"]["bias"]) + o
            mu, var = ff.mean(), ff.var()
            ln = p["ffn_norm"]
            out[b, t] = (ff - mu) / np.sqrt(var + eps) * f(ln["scale"]) + f(ln["bias"])
    return out


@pytest.mark.parametrize("conv_kernel", [TINY.conv_kernel, 0])
@pytest.mark.parametrize("scale", [1.0, 1e-3])  # small inputs: the norm's epsilon shows
def test_mamba_block_equals_numpy_reference(conv_kernel, scale):
    """(the scans agree with each other in test_scan_methods_match_naive_loop)"""
    from resel.networks import MambaBlock

    cfg = dataclasses.replace(TINY, conv_kernel=conv_kernel)
    block = MambaBlock(cfg)
    x = scale * jax.random.normal(jax.random.PRNGKey(11), (2, 10, cfg.ce_dim))
    start = jnp.zeros((2, 10)).at[:, 0].set(1.0).at[0, 6].set(1.0)  # a reset inside row 0
    params = block.init(jax.random.PRNGKey(12), x, start)
    # move every parameter off its init value so that no term hides behind a 0 or a 1
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(13), len(leaves))
    leaves = [v + 0.3 * jax.random.normal(k, v.shape) for v, k in zip(leaves, keys, strict=True)]
    params = jax.tree.unflatten(tree, leaves)
    out = jax.jit(block.apply)(params, x, start)
    ref = _mamba_reference(params["params"], x, start, cfg)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    key = jax.random.PRNGKey(8)
    mean = jnp.array([[0.3, -1.2]])
    log_std = jnp.array([[-0.5, 0.2]])
    a, logp = tanh_gaussian_sample(key, mean, log_std)
    u = np.arctanh(np.asarray(a, np.float64))
    std = np.exp(np.asarray(log_std, np.float64))
    normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    ref = np.sum(normal - np.log(1 - np.tanh(u) ** 2), axis=-1)
    np.testing.assert_allclose(logp, ref, rtol=1e-4)


def test_context_encoder_input_mlp_has_ce_in_layers_elu_layers():
    """Key-to-Door's 3-layer 256-unit MLP before the Mamba block (paper App. D.3.2), at tiny
    width: ELU(W3 ELU(W2 ELU(W1 x + b1) + b2) + b3) in numpy, with Xavier weights, zero biases."""
    from resel.networks import ContextEncoder

    cfg = dataclasses.replace(TINY, ce_in_layers=3, conv_kernel=0)
    enc = ContextEncoder(cfg)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7))
    params = enc.init(jax.random.PRNGKey(1), x, jnp.zeros((2, 5)).at[:, 0].set(1.0))["params"]
    names = ["in_proj", "in_proj_1", "in_proj_2"]
    assert [params[n]["kernel"].shape for n in names] == [(7, cfg.ce_dim)] + [(cfg.ce_dim,) * 2] * 2
    assert not any(np.asarray(params[n]["bias"]).any() for n in names)
    elu = lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0)))
    h = np.asarray(x, np.float64)
    for n in names:
        h = elu(h @ np.asarray(params[n]["kernel"]) + np.asarray(params[n]["bias"]))
    out = enc.apply({"params": params}, x, method=ContextEncoder._in)
    np.testing.assert_allclose(np.asarray(out), h, rtol=1e-5, atol=1e-6)
    assert "conv_w" not in params["mamba_0"]


def test_pre_and_critic_encoders_have_pytorch_default_init():
    """The release keeps torch's nn.Linear init for the pre-encoders and the critic's observation
    and action encoders: weights and biases U(+-1/sqrt(fan_in)), so biases are not zero."""
    cfg = dataclasses.replace(TINY, pre_dim=512, obs_embed=512, act_embed=512)
    critic = Critic(cfg, use_reward=False, action_dim=3)
    seq = Seq(*(jnp.zeros((1, 2, d)) for d in (5, 5, 3, 1)), jnp.zeros((1, 2)))
    p = critic.init(jax.random.PRNGKey(0), seq, jnp.zeros((1, 2, 3)))["params"]
    for layer, fan_in in ((p["obs_encoder"], 5), (p["action_encoder"], 3),
                          (p["pre_encoder"]["obs"], 5), (p["pre_encoder"]["last_act"], 3)):  # fmt: skip
        for leaf in (layer["kernel"], layer["bias"]):
            v = np.asarray(leaf)
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(v).max() <= bound and np.abs(v).max() > 0.8 * bound
            assert abs(v.std() - bound / np.sqrt(3)) < 0.25 * bound  # U(-b, b) has std b/sqrt(3)
