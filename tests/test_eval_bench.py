"""The benchmarks' reference computations compute what they claim to."""

import jax
import numpy as np

import optim4rl
from eval.bench.optimizer import (
    mlp_like_tree,
    optim4rl_grus,
    optim4rl_meta_gradient,
    optim4rl_meta_loss,
)
from eval.bench.timing import (
    host_allocator,
    median,
    ratio_text,
    round_ratios,
    time_interleaved,
)


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


def test_meta_gradient_row_matches_a_central_finite_difference():
    """The benchmark's meta-gradient against (L(phi + e v) - L(phi - e v)) / 2e along a random
    direction v of the meta-parameters, in float64, from a non-zero state."""
    with jax.enable_x64():
        key = jax.random.key(4)
        f64 = lambda t: jax.tree_util.tree_map(lambda x: x.astype(jax.numpy.float64), t)
        meta_params = f64(optim4rl.init_meta_params(key, "optim4rl"))
        params = f64(mlp_like_tree(300, key))
        grads = jax.tree_util.tree_map(lambda x: 0.5 * jax.numpy.tanh(x), params)
        tx = optim4rl.learned(1e-3, meta_params, "optim4rl")
        state = tx.update(grads, tx.init(params), params)[1]

        loss = lambda mp: float(optim4rl_meta_loss(mp, grads, state, params))
        got = optim4rl_meta_gradient(meta_params)(grads, state, params)
        leaves, treedef = jax.tree_util.tree_flatten(meta_params)
        keys = jax.random.split(jax.random.key(5), len(leaves))
        v = treedef.unflatten(
            [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
        )
        eps = 1e-5
        shift = lambda s: jax.tree_util.tree_map(lambda p, d: p + s * eps * d, meta_params, v)
        want = (loss(shift(1.0)) - loss(shift(-1.0))) / (2 * eps)
        have = sum(
            float(jax.numpy.vdot(a, b))
            for a, b in zip(
                jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(v), strict=True
            )
        )
        np.testing.assert_allclose(have, want, rtol=1e-6)


def test_host_allocator_names_what_the_environment_chose(monkeypatch):
    for var in ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES"):
        monkeypatch.delenv(var, raising=False)
    assert host_allocator().endswith("malloc (default)")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=1")
    assert host_allocator().endswith("malloc, GLIBC_TUNABLES=glibc.malloc.arena_max=1")
    monkeypatch.setenv("LD_PRELOAD", "/lib/libfoo.so /usr/lib/libjemalloc.so.2")
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    assert host_allocator() == "libjemalloc.so.2 (LD_PRELOAD), MALLOC_CONF=dirty_decay_ms:-1"
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libtcmalloc_minimal.so.4")  # MALLOC_CONF: jemalloc's
    assert host_allocator() == "libtcmalloc_minimal.so.4 (LD_PRELOAD)"


def test_time_interleaved_calls_in_rounds_and_ratios_are_taken_within_rounds():
    calls = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    times = time_interleaved(fns, repeats=3, warmup=1, best_of=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3
    assert sorted(times) == ["a", "b"] and all(len(t) == 3 and min(t) > 0 for t in times.values())
    # ratios pair each round's times: a slow round of both gives the same ratio as a fast one
    rounds = {"x": [2.0, 20.0, 4.0, 3.0], "y": [1.0, 10.0, 1.0, 2.0]}
    assert round_ratios(rounds, "x", "y") == (2.0, 1.5, 4.0)
    assert ratio_text(rounds, "x", "y") == "2.00x (1.50-4.00x)"
    assert median(rounds["x"]) == 3.5 and median([5.0, 1.0, 3.0]) == 3.0
