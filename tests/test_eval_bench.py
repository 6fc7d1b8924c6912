"""The benchmarks' reference computations compute what they claim to."""

import jax
import numpy as np

import optim4rl
from eval.bench.optimizer import mlp_like_tree, optim4rl_grus


def test_grus_only_reference_equals_the_learned_transforms_state_update():
    key = jax.random.key(3)
    meta_params = optim4rl.init_meta_params(key, "optim4rl")
    params = mlp_like_tree(600, key)
    grads = jax.tree_util.tree_map(lambda x: 0.5 * jax.numpy.tanh(x), params)  # inside the clip
    tx = optim4rl.learned(1e-3, meta_params, "optim4rl")
    state = tx.init(params)
    for _ in range(2):  # the second step starts from non-zero states
        _, new_state = tx.update(grads, state, params)
        got = optim4rl_grus(meta_params)(grads, state)
        for i in range(2):
            want = jax.tree_util.tree_leaves(new_state[0].hidden[i])
            have = [
                pair[i]
                for pair in jax.tree_util.tree_leaves(got, is_leaf=lambda x: isinstance(x, tuple))
            ]
            assert len(want) == len(have) == 6
            for w, h in zip(want, have, strict=True):
                np.testing.assert_allclose(h, w, rtol=1e-6, atol=1e-7)
        state = new_state
