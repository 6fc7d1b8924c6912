"""The learned update rules against an independent NumPy implementation of the spec's equations,
and their behaviour as optax transforms (dtypes, shapes, jit, vmap, composition, meta-gradients)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

import optim4rl
from optim4rl import networks

KEY = jax.random.key(0)


# ---- independent reference: one coordinate at a time, float64, the spec's formulas ----------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_gru(p, x, h):
    """flax GRUCell for a single coordinate. x: (d,), h: (8,)."""
    f = lambda name: np.asarray(p[name]["kernel"], np.float64)
    b = lambda name: np.asarray(p[name]["bias"], np.float64)
    r = _sigmoid(x @ f("ir") + b("ir") + h @ f("hr"))
    z = _sigmoid(x @ f("iz") + b("iz") + h @ f("hz"))
    n = np.tanh(x @ f("in") + b("in") + r * (h @ f("hn") + b("hn")))
    return (1 - z) * n + z * h


def _np_dense(p, h):
    return h @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _np_step(kind, mp, g, h, clip=1.0, eps=1e-8):
    """Direction and new hidden state for one coordinate with scalar gradient g."""
    g = min(max(g, -clip), clip)
    if kind == "optim4rl":
        h1 = _np_gru(mp["gru_g"], np.array([g]), h[:8])
        h2 = _np_gru(mp["gru_g2"], np.array([g * g]), h[8:])
        o1, o2 = _np_dense(mp["head_g"], h1)[0], _np_dense(mp["head_g2"], h2)[0]
        return np.sign(g) * np.exp(o1) / np.sqrt(np.exp(o2) + eps), np.concatenate([h1, h2])
    if kind == "lin":
        h = _np_gru(mp["gru"], np.array([g]), h)
        o = _np_dense(mp["head"], h)
        return np.exp(o[0]) * g + np.exp(o[1]) * o[2], h
    if abs(g) >= np.exp(-10.0):
        x = np.array([np.log(abs(g) + 1e-8) / 10.0, np.sign(g)])
    else:
        x = np.array([-1.0, np.exp(10.0) * g])
    h = _np_gru(mp["gru"], x, h)
    return np.exp(_np_dense(mp["head"], h)[0]) * g, h


@pytest.mark.parametrize("kind", optim4rl.KINDS)
def test_update_matches_numpy_reference_over_steps(kind):
    mp = optim4rl.init_meta_params(jax.random.key(1), kind)
    # Make the heads non-trivial so every term of the update matters.
    mp = jax.tree_util.tree_map(lambda x: x * 1.5 + 0.05, mp)
    params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros(()), "c": jnp.zeros((4,))}
    tx = optim4rl.scale_by_learned(mp, kind)
    state = tx.init(params)
    update = jax.jit(tx.update)
    size = optim4rl.hidden_size(kind)
    rng = np.random.default_rng(0)
    hidden = {k: np.zeros((int(np.prod(v.shape)), size)) for k, v in params.items()}
    for _ in range(4):
        # Gradients spanning tiny (L2L's other branch), ordinary, clipped and zero values.
        grads = {
            k: (rng.normal(size=v.shape) * 10.0 ** rng.uniform(-6, 0.5, size=v.shape)).astype(
                np.float32
            )
            for k, v in params.items()
        }
        grads["c"][0] = 0.0
        grads["c"][1] = 1e-6
        grads["c"][2] = 3.0
        out, state = update(jax.tree_util.tree_map(jnp.asarray, grads), state)
        for name, g in grads.items():
            flat_g = np.asarray(g, np.float64).reshape(-1)
            want = np.zeros_like(flat_g)
            for i, gi in enumerate(flat_g):
                want[i], hidden[name][i] = _np_step(kind, mp, gi, hidden[name][i])
            np.testing.assert_allclose(np.ravel(out[name]), want, rtol=2e-5, atol=1e-6)
            got_h = np.concatenate([np.reshape(h[name], (-1, 8)) for h in state.hidden], axis=1)
            np.testing.assert_allclose(got_h, hidden[name], rtol=2e-5, atol=1e-6)


def test_gru_step_equals_flax_gru_cell():
    mp = optim4rl.init_meta_params(jax.random.key(3), "l2lgd2")
    x = jax.random.normal(jax.random.key(4), (5, 2))
    h = jax.random.normal(jax.random.key(5), (5, 8))
    want, _ = nn.GRUCell(features=8).apply({"params": mp["gru"]}, h, x)
    got = networks.gru_step(mp["gru"], x, h)  # feature-last, as flax
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(), (7,), (3, 5)])
def test_gru_step_gradients_equal_flax_gru_cell_gradients(shape):
    """The hand-written backward of the GRU's products (one matrix product per kernel) against
    autodiff of flax's GRUCell, for meta-parameters and inputs, over 0, 1 and 2 batch axes."""
    mp = optim4rl.init_meta_params(jax.random.key(3), "l2lgd2")["gru"]
    x = jax.random.normal(jax.random.key(4), (*shape, 2))
    h = jax.random.normal(jax.random.key(5), (*shape, 8))
    w = jax.random.normal(jax.random.key(6), (*shape, 8))  # a random cotangent

    def ours(p, x, h):
        return jnp.sum(w * networks.gru_step(p, x, h))

    def flax(p, x, h):
        return jnp.sum(w * nn.GRUCell(features=8).apply({"params": p}, h, x)[0])

    got = jax.grad(ours, argnums=(0, 1, 2))(mp, x, h)
    want = jax.grad(flax, argnums=(0, 1, 2))(mp, x, h)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gate_sigmoid_and_its_derivatives_match_the_logistic_function():
    """The GRU's sigmoid (a tanh form with a derivative rule from its output) against
    1 / (1 + e^-x) and its first two derivatives s(1 - s), s(1 - s)(1 - 2s), in float64: equal
    to float32 rounding in absolute terms (the tanh form reaches 0 where e^-x passes 1e7)."""
    x = np.linspace(-30.0, 30.0, 601)
    s = _sigmoid(x)
    f = networks._sigmoid
    xs = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(f(xs), s, rtol=1e-6, atol=2e-7)
    np.testing.assert_allclose(jax.vmap(jax.grad(f))(xs), s * (1 - s), rtol=1e-5, atol=2e-7)
    second = jax.vmap(jax.grad(jax.grad(f)))(xs)
    np.testing.assert_allclose(second, s * (1 - s) * (1 - 2 * s), rtol=1e-4, atol=1e-6)


def test_meta_param_counts_and_hidden_sizes():
    counts = {
        k: optim4rl.num_meta_params(optim4rl.init_meta_params(KEY, k)) for k in optim4rl.KINDS
    }
    # optim4rl: 2 x (GRU 248 + head 9); lin: 248 + Dense(8->3) 27; l2lgd2: GRU on 2 inputs 272 + 9.
    assert counts == {"optim4rl": 514, "lin": 275, "l2lgd2": 281}
    assert [optim4rl.hidden_size(k) for k in optim4rl.KINDS] == [16, 8, 8]


def test_random_init_is_close_to_sign_descent():
    tx = optim4rl.optim4rl(1.0, optim4rl.init_meta_params(KEY))
    g = jnp.array([-0.3, 1e-4, 0.7, -2.0])
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(np.sign(u), -np.sign(g))
    assert np.all((np.abs(u) > 0.2) & (np.abs(u) < 5.0))


def test_dtypes_scalars_and_hidden_shapes():
    tx = optim4rl.optim4rl(1e-3, optim4rl.init_meta_params(KEY))
    params = {"s": jnp.float32(1.0), "bf": jnp.ones((3, 2), jnp.bfloat16), "f": jnp.ones((7,))}
    state = tx.init(params)
    hidden = state[0].hidden
    assert [h["s"].shape for h in hidden] == [(8,), (8,)]
    assert [h["bf"].shape for h in hidden] == [(3, 2, 8), (3, 2, 8)]
    assert all(h.dtype == jnp.float32 for h in jax.tree_util.tree_leaves(hidden))
    u, state = jax.jit(tx.update)(params, state)
    assert u["bf"].dtype == jnp.bfloat16 and u["s"].shape == () and u["f"].dtype == jnp.float32
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(u))


def _np_direction(mp, g, steps=1):
    """The reference direction of every coordinate of g after `steps` equal gradients (fresh state)."""
    flat = np.asarray(g, np.float64).reshape(-1)
    out = np.zeros_like(flat)
    for i, gi in enumerate(flat):
        h = np.zeros(16)
        for _ in range(steps):
            out[i], h = _np_step("optim4rl", mp, gi, h)
    return out.reshape(np.shape(g))


def test_vmap_over_a_batch_of_parameter_trees_matches_the_reference():
    mp = jax.tree_util.tree_map(lambda x: x * 1.5 + 0.05, optim4rl.init_meta_params(KEY))
    tx = optim4rl.optim4rl(1e-2, mp)
    grads = {"w": jax.random.normal(jax.random.key(7), (3, 2, 3)), "b": jnp.ones((3, 2))}
    states = jax.vmap(tx.init)(grads)
    step = jax.vmap(tx.update)
    u, states = step(grads, states)
    u, _ = step(grads, states)  # second step: the hidden states carried per batch element count
    for k, g in grads.items():
        np.testing.assert_allclose(u[k], -1e-2 * _np_direction(mp, g, 2), rtol=2e-5, atol=1e-9)


def test_chain_with_global_norm_clipping_that_triggers():
    mp = jax.tree_util.tree_map(lambda x: x * 1.5 + 0.05, optim4rl.init_meta_params(KEY))
    g = {"w": jnp.array([0.3, -0.4]), "b": jnp.array([1.2])}  # global norm 1.3: clipped to 1
    chained = optax.chain(optax.clip_by_global_norm(1.0), optim4rl.optim4rl(1e-3, mp))
    u_chain, _ = chained.update(g, chained.init(g))
    for k in g:  # by hand: g / 1.3 enters the learned optimizer
        want = -1e-3 * _np_direction(mp, np.asarray(g[k]) / 1.3)
        np.testing.assert_allclose(u_chain[k], want, rtol=2e-5)
    base, _ = optim4rl.optim4rl(1e-3, mp).update(g, optim4rl.optim4rl(1e-3, mp).init(g))
    assert not np.allclose(u_chain["w"], base["w"], rtol=1e-3)  # the clip changed the step


def test_inject_hyperparams_changes_the_learning_rate():
    mp = optim4rl.init_meta_params(KEY)
    g = {"w": jnp.array([0.5, -0.5])}
    tx = optax.inject_hyperparams(optim4rl.optim4rl, static_args="meta_params")(
        learning_rate=1e-3, meta_params=mp
    )
    state = tx.init(g)
    u1, state = tx.update(g, state)
    state.hyperparams["learning_rate"] = jnp.asarray(1e-2)
    u2, _ = tx.update(g, state)
    # Same hidden-state evolution as a plain optimizer with lr 1e-2 for the second step.
    plain = optim4rl.optim4rl(1e-2, mp)
    s = plain.init(g)
    _, s = plain.update(g, s)
    u2_ref, _ = plain.update(g, s)
    np.testing.assert_allclose(u2["w"], u2_ref["w"], rtol=1e-5)
    assert abs(float(u2["w"][0])) > 5 * abs(float(u1["w"][0]))


_MP = jax.tree_util.tree_map(lambda x: x * 1.5 + 0.05, optim4rl.init_meta_params(KEY))


def test_tree_map_params_finds_one_parameter_copy_per_gru_and_sharding_rules_apply():
    params = {"w": jnp.ones((4, 6)), "b": jnp.ones((6,)), "s": jnp.float32(1.0)}
    tx = optim4rl.optim4rl(1e-3, _MP)
    state = tx.init(params)
    # f sees every hidden state with its parameter: leading axes are the parameter's, then 8.
    seen = optax.tree_map_params(
        tx, lambda h, p: (h.shape, p.shape), state, params, transform_non_params=lambda _: None
    )
    pair = {"w": ((4, 6, 8), (4, 6)), "b": ((6, 8), (6,)), "s": ((8,), ())}
    assert seen[0].hidden == (pair, pair)
    # A sharding rule written for the parameters, copied onto the state, places every array.
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("x",))
    P = jax.sharding.PartitionSpec
    rules = {"w": P("x", None), "b": P("x"), "s": P()}
    shardings = optax.tree_map_params(
        tx,
        lambda _, spec: jax.sharding.NamedSharding(mesh, spec),
        state,
        rules,
        transform_non_params=lambda _: jax.sharding.NamedSharding(mesh, P()),
        is_leaf=lambda x: isinstance(x, P),
    )
    placed = jax.device_put(state, shardings)
    w_hidden = placed[0].hidden[0]["w"]
    assert w_hidden.sharding.spec == P("x", None) and w_hidden.shape == (4, 6, 8)


def test_multisteps_averages_micro_batches_before_the_learned_step():
    tx = optax.MultiSteps(optim4rl.optim4rl(1e-2, _MP), every_k_schedule=2)
    g1, g2 = {"w": jnp.array([0.4, -0.2, 2.0])}, {"w": jnp.array([0.2, 0.6, -1.0])}
    state = tx.init(g1)
    u1, state = tx.update(g1, state)
    u2, state = tx.update(g2, state)
    np.testing.assert_array_equal(u1["w"], 0.0)  # accumulating
    want = -1e-2 * _np_direction(_MP, (np.asarray(g1["w"]) + np.asarray(g2["w"])) / 2)
    np.testing.assert_allclose(u2["w"], want, rtol=2e-5)


def test_masked_and_none_leaves():
    g = {"w": jnp.array([0.4, -0.2]), "b": jnp.array([3.0]), "frozen": None}
    tx = optax.masked(optim4rl.optim4rl(1e-2, _MP), {"w": True, "b": False, "frozen": None})
    u, state = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_allclose(u["w"], -1e-2 * _np_direction(_MP, g["w"]), rtol=2e-5)
    np.testing.assert_array_equal(u["b"], g["b"])  # unmasked leaves pass through unchanged
    assert u["frozen"] is None
    hidden = state.inner_state[0].hidden
    assert [h["w"].shape for h in hidden] == [(2, 8), (2, 8)] and hidden[0]["frozen"] is None
    plain = optim4rl.optim4rl(1e-2, _MP)  # None leaves need no mask either
    u, _ = plain.update(g, plain.init(g))
    assert u["frozen"] is None and u["b"].shape == (1,)


class _TwoModules(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(4, name="context_encoder")(x)
        return nn.Dense(1, name="head")(jnp.tanh(h))


def test_partition_two_optimizers_on_two_flax_modules_and_train_state():
    model = _TwoModules()
    variables = model.init(KEY, jnp.ones((1, 3)))
    tx = optim4rl.from_spec(
        {
            "context_encoder": "sgd(learning_rate=0.0)",
            "default": optim4rl.optim4rl(1e-2, optim4rl.init_meta_params(KEY)),
        }
    )
    state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)

    def loss(p):
        return jnp.mean((state.apply_fn({"params": p}, jnp.ones((8, 3))) - 1.0) ** 2)

    grads = jax.grad(loss)(state.params)
    new = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, grads)
    same = jax.tree_util.tree_map(
        jnp.array_equal, new.params["context_encoder"], state.params["context_encoder"]
    )
    assert all(jax.tree_util.tree_leaves(same))  # lr 0 on the encoder
    step = new.params["head"]["kernel"] - state.params["head"]["kernel"]
    # sign descent of size ~1e-2 on the head
    assert np.all(np.sign(step) == -np.sign(grads["head"]["kernel"]))
    assert np.all((np.abs(step) > 2e-3) & (np.abs(step) < 5e-2))


_GRADS = np.array([[0.4, -0.2, 1.5], [0.3, -0.05, -0.7], [0.2, 0.01, 0.3]])


def _meta_loss(mp, kind):
    """Loss of parameters after 3 learned-optimizer steps on a fixed gradient sequence.

    The agent gradients enter the optimizer through stop_gradient (spec), so they are fixed here,
    which makes central finite differences of the whole computation the exact reference.
    """
    target = jnp.array([1.0, -2.0, 0.5])
    tx = optim4rl.learned(0.1, mp, kind)
    params = jnp.zeros(3)
    state = tx.init(params)
    for g in _GRADS:
        u, state = tx.update(jnp.asarray(g), state)
        params = optax.apply_updates(params, u)
    return jnp.sum((params - target) ** 2)


@pytest.mark.parametrize("kind", optim4rl.KINDS)
def test_meta_gradient_matches_central_finite_differences(kind):
    with jax.enable_x64(True):
        mp = jax.tree_util.tree_map(
            lambda x: jnp.asarray(x, jnp.float64), optim4rl.init_meta_params(KEY, kind)
        )
        grad = jax.grad(_meta_loss)(mp, kind)
        flat, unravel = jax.flatten_util.ravel_pytree(mp)
        gflat, _ = jax.flatten_util.ravel_pytree(grad)
        assert np.all(np.isfinite(gflat)) and np.linalg.norm(gflat) > 0
        loss_of_flat = jax.jit(lambda v: _meta_loss(unravel(v), kind))
        rng = np.random.default_rng(0)
        idx = np.concatenate(
            [np.argsort(-np.abs(gflat))[:4], rng.choice(flat.size, 4, replace=False)]
        )
        h = 1e-5
        for i in idx:
            e = jnp.zeros_like(flat).at[i].set(h)
            fd = (loss_of_flat(flat + e) - loss_of_flat(flat - e)) / (2 * h)
            np.testing.assert_allclose(gflat[i], fd, rtol=1e-4, atol=1e-8)


def test_agent_gradients_enter_through_stop_gradient():
    tx = optim4rl.scale_by_optim4rl(optim4rl.init_meta_params(KEY))
    g = jnp.array([0.3, -0.1])
    state = tx.init(g)
    d_dg = jax.grad(lambda x: jnp.sum(tx.update(x, state)[0]))(g)
    np.testing.assert_array_equal(d_dg, 0.0)
