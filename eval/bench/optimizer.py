"""`python -m eval bench optimizer`: time of one optimizer update, learned kinds vs optax.adamw.

Parameter trees shaped like an MLP (several leaves of mixed sizes) with 1e4, 1e5 and 1e6 scalars; each
update is jitted, timed after compilation, and reported with its ratio to adamw on the same tree.
One more row, "optim4rl GRUs only", times the two GRU steps of Optim4RL by themselves (no clip, no
head, no optax plumbing): the arithmetic that any implementation of the method has to do. The last,
"optim4rl meta-gradient", times what meta-training differentiates: the gradient w.r.t. the
meta-parameters of one update's directions and new hidden states (forward and backward), so that a
change which speeds up the update but slows its backward pass shows here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import optim4rl
from eval.bench import cli
from eval.bench.timing import host_allocator, median, ratio_text, time_interleaved
from optim4rl import networks


def mlp_like_tree(n: int, key: jax.Array) -> dict[str, jax.Array]:
    """About n float32 scalars in 6 leaves: three (w, b) pairs with a 3:2:1 share of the weights."""
    width = max(int((n / 6) ** 0.5), 2)
    shapes = {
        "w0": (3 * width, width),
        "b0": (width,),
        "w1": (2 * width, width),
        "b1": (width,),
        "w2": (n // width - 5 * width - 3, width),
        "b2": (width,),
    }
    keys = jax.random.split(key, len(shapes))
    return {k: jax.random.normal(kk, s) for kk, (k, s) in zip(keys, shapes.items(), strict=True)}


def optim4rl_grus(meta_params: networks.MetaParams) -> optax.TransformUpdateFn:
    """Optim4RL's two GRU steps on every leaf, h1 <- GRU1(h1, g), h2 <- GRU2(h2, g^2), as an update
    function with the learned transform's signature (the reference row of the table)."""

    def leaf(g: jax.Array, h1: jax.Array, h2: jax.Array) -> tuple[jax.Array, jax.Array]:
        return (
            networks.gru_step(meta_params["gru_g"], g[..., None], h1),
            networks.gru_step(meta_params["gru_g2"], (g * g)[..., None], h2),
        )

    def update(grads, state, params=None):
        del params
        (inner, _) = state  # optim4rl.learned's chain: (LearnedOptimizerState, scale state)
        return jax.tree_util.tree_map(leaf, grads, *inner.hidden)

    return update


def optim4rl_meta_loss(meta_params: networks.MetaParams, grads, state, params=None) -> jax.Array:
    """sum(directions) + sum(new hidden states) of one Optim4RL update from `state` (the chain's
    state of `optim4rl.learned`), as a function of the meta-parameters."""
    updates, (inner, _) = optim4rl.learned(1e-3, meta_params, "optim4rl").update(
        grads, state, params
    )
    return sum(jnp.sum(x) for x in jax.tree_util.tree_leaves((updates, inner.hidden)))


def optim4rl_meta_gradient(meta_params: networks.MetaParams) -> optax.TransformUpdateFn:
    """d `optim4rl_meta_loss` / d meta_params, as an update function with the learned transform's
    signature (returns the meta-gradient)."""

    def update(grads, state, params=None):
        return jax.grad(optim4rl_meta_loss)(meta_params, grads, state, params)

    return update


def main(argv: list[str]) -> int:
    args = cli.optimizer().parse_args(argv)
    key = jax.random.key(0)
    optimizers = {"adamw": optax.adamw(1e-3)}
    for kind in optim4rl.KINDS:
        optimizers[kind] = optim4rl.learned(1e-3, optim4rl.init_meta_params(key, kind), kind)
    meta_params = optim4rl.init_meta_params(key, "optim4rl")
    grus_only = optax.GradientTransformation(
        optimizers["optim4rl"].init, optim4rl_grus(meta_params)
    )
    optimizers["optim4rl GRUs only"] = grus_only
    optimizers["optim4rl meta-gradient"] = optax.GradientTransformation(
        optimizers["optim4rl"].init, optim4rl_meta_gradient(meta_params)
    )
    print(f"backend: {jax.default_backend()}, devices: {len(jax.devices())}, {host_allocator()}")
    print(f"medians of {args.repeats} interleaved rounds, each update the fastest of 3 in a row; "
          "ratios within rounds (range)")  # fmt: skip
    print("| params | optimizer | update (ms) | ratio to adamw |")
    print("|---:|---|---:|---:|")
    for size in args.sizes:
        params = mlp_like_tree(int(size), key)
        n = sum(x.size for x in jax.tree_util.tree_leaves(params))
        grads = jax.tree_util.tree_map(lambda x: 0.01 * x, params)
        steps = {}
        for name, tx in optimizers.items():
            update, state = jax.jit(tx.update), tx.init(params)
            steps[name] = lambda u=update, s=state, g=grads, p=params: u(g, s, p)
        # warm: each update the fastest of 3 calls in a row, as a back-to-back benchmark has it
        # (cold, right after another row's update, adamw's 16 MB at 1e6 come from DRAM)
        times = time_interleaved(steps, repeats=args.repeats, best_of=3)
        for name, t in times.items():
            print(
                f"| {n:,} | {name} | {median(t) * 1e3:.3f} | {ratio_text(times, name, 'adamw')} |"
            )
    return 0
