"""learned_optimization interop: (a) the protocol adapter, always; (b) wrapping its learned
optimizers as optax transforms, only where learned_optimization is installed."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim4rl
from optim4rl.contrib import learned_optimization as lo_interop


def test_adapter_follows_the_learned_optimizer_protocol_and_matches_optax():
    adapter = lo_interop.LOptAdapter("optim4rl", learning_rate=1e-2)
    theta = adapter.init(jax.random.key(0))
    assert optim4rl.num_meta_params(theta) == 514
    opt = adapter.opt_fn(theta, is_training=True)
    params = {"w": jnp.array([1.0, -1.0, 0.5])}
    state = opt.init(params, model_state=None, num_steps=10, key=jax.random.key(1))
    tx = optim4rl.optim4rl(1e-2, theta)
    ref_params, ref_state = params, tx.init(params)
    update = jax.jit(opt.update)
    for i in range(3):
        grad = {"w": jnp.array([0.3, -0.2, 0.1]) * (i + 1)}
        state = update(state, grad, loss=jnp.float32(1.0))
        u, ref_state = tx.update(grad, ref_state)
        ref_params = optax.apply_updates(ref_params, u)
    np.testing.assert_allclose(opt.get_params(state)["w"], ref_params["w"], rtol=1e-6)
    assert int(state.iteration) == 3 and opt.get_state(state) is None
    assert adapter.name == "optim4rl_lr0.01"


def test_missing_package_or_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown learned_optimization optimizer 'velo'"):
        lo_interop.make_lopt("velo")
    if not lo_interop.available():
        with pytest.raises(ImportError, match="learned_optimization is not installed"):
            lo_interop.lopt_transform("mlp")


@pytest.mark.skipif(
    not lo_interop.available(),
    reason="learned_optimization is not installed (optional; see the README for its install line)",
)
@pytest.mark.parametrize("name", ["adafac_mlp", "mlp"])
def test_wrapped_lopt_equals_its_own_update_loop(name):
    tx = lo_interop.lopt_transform(name, key=jax.random.PRNGKey(0), num_steps=100)
    lopt = lo_interop.make_lopt(name)
    opt = lopt.opt_fn(lopt.init(jax.random.PRNGKey(0)))
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros((3,))}
    ref = opt.init(params, num_steps=100)
    state = tx.init(params)
    for i in range(3):
        grads = jax.tree_util.tree_map(lambda p, i=i: 0.1 * p + 0.01 * (i + 1), params)
        updates, state = tx.update(grads, state, params, value=jnp.float32(2.0 - i))
        params = optax.apply_updates(params, updates)
        ref = opt.update(ref, grads, loss=jnp.float32(2.0 - i))
    for k in params:
        np.testing.assert_allclose(params[k], opt.get_params(ref)[k], rtol=1e-5, atol=1e-7)
