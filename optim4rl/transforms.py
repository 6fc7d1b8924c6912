"""Learned optimizers as optax gradient transformations.

`scale_by_learned(meta_params, kind)` maps gradients to a learned descent direction; the learning
rate is a separate scale, as in optax (`optim4rl(learning_rate, meta_params)` chains both). The
meta-parameters are closed over, never stored in the state, so a transform built inside a loss
function is differentiable with respect to them (what meta-training needs). Agent gradients enter
through `stop_gradient`: the meta-gradient flows through the recurrent states and the parameters the
updates produce, not through second-order terms of g.

Each leaf is processed whole: the network runs on all its coordinates in one fused pass (no loop
over coordinates, and no copy of gradients or states into one vector, which cost 3x the memory
traffic of the step itself).
Hidden states are float32 whatever the parameter dtype; updates come back in each leaf's dtype.

State layout: one tree shaped like the parameters per GRU cell, whose leaf for a parameter of shape
S has shape S + (8,) (features last). So `optax.tree_map_params` finds exactly these trees as the
parameter copies in the state, and a sharding rule copied from a parameter (a PartitionSpec over its
leading axes) shards its hidden state along the same axes, the 8 features replicated.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optim4rl import networks
from optim4rl.networks import MetaParams


class LearnedOptimizerState(NamedTuple):
    """Per-coordinate recurrent state: a tuple with one tree like the parameters per GRU cell (two
    for optim4rl, one otherwise), whose leaves are float32 arrays of shape leaf.shape + (8,)."""

    hidden: tuple[Any, ...]


def scale_by_learned(
    meta_params: MetaParams,
    kind: str | None = None,
    *,
    grad_clip: float | None = 1.0,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """Rescale gradients by a learned per-coordinate recurrent network.

    Args:
      meta_params: meta-parameters from `init_meta_params` or a checkpoint.
      kind: "optim4rl", "lin" or "l2lgd2"; inferred from the meta-parameters' layout when None.
      grad_clip: gradients are clipped element-wise to [-grad_clip, grad_clip] first (None: no clip).
      eps: the epsilon of Optim4RL's sign(g) exp(o1) / sqrt(exp(o2) + eps).

    Returns:
      A transformation whose updates are the descent direction (chain it with
      `optax.scale_by_learning_rate`).
    """
    kind = networks.infer_kind(meta_params) if kind is None else networks.check_kind(kind)
    n_grus = networks.num_grus(kind)

    def init_fn(params: optax.Params) -> LearnedOptimizerState:
        zeros = lambda p: jnp.zeros(jnp.shape(p) + (networks.GRU_SIZE,), jnp.float32)
        return LearnedOptimizerState(
            hidden=tuple(jax.tree_util.tree_map(zeros, params) for _ in range(n_grus))
        )

    def leaf_update(g: jax.Array, *h: jax.Array) -> tuple[jax.Array, tuple]:
        x = jax.lax.stop_gradient(g).astype(jnp.float32)
        if grad_clip is not None:
            x = jnp.clip(x, -grad_clip, grad_clip)
        out, h = networks.direction(kind, meta_params, x, h, eps)
        return out.astype(g.dtype), h

    def update_fn(
        updates: optax.Updates, state: LearnedOptimizerState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, LearnedOptimizerState]:
        del params
        pairs = jax.tree_util.tree_map(leaf_update, updates, *state.hidden)
        out = jax.tree_util.tree_map(lambda _, pair: pair[0], updates, pairs)
        hidden = tuple(
            jax.tree_util.tree_map(lambda _, pair, i=i: pair[1][i], updates, pairs)
            for i in range(n_grus)
        )
        return out, LearnedOptimizerState(hidden=hidden)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_optim4rl(
    meta_params: MetaParams, *, grad_clip: float | None = 1.0, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Optim4RL direction sign(g) exp(o1) / sqrt(exp(o2) + eps) from two GRU(8) cells on g and g^2."""
    return scale_by_learned(meta_params, "optim4rl", grad_clip=grad_clip, eps=eps)


def scale_by_lin(
    meta_params: MetaParams, *, grad_clip: float | None = 1.0
) -> optax.GradientTransformation:
    """Lin direction exp(o1) g + exp(o2) o3 from one GRU(8) cell on g."""
    return scale_by_learned(meta_params, "lin", grad_clip=grad_clip)


def scale_by_l2lgd2(
    meta_params: MetaParams, *, grad_clip: float | None = 1.0
) -> optax.GradientTransformation:
    """L2LGD2 direction exp(o) g from one GRU(8) cell on preprocessed (log|g|/p, sign g)."""
    return scale_by_learned(meta_params, "l2lgd2", grad_clip=grad_clip)


def learned(
    learning_rate: optax.ScalarOrSchedule,
    meta_params: MetaParams,
    kind: str | None = None,
    *,
    grad_clip: float | None = 1.0,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """A ready learned optimizer: update = -learning_rate * learned direction."""
    return optax.chain(
        scale_by_learned(meta_params, kind, grad_clip=grad_clip, eps=eps),
        optax.scale_by_learning_rate(learning_rate),
    )


def optim4rl(
    learning_rate: optax.ScalarOrSchedule,
    meta_params: MetaParams | None = None,
    *,
    grad_clip: float | None = 1.0,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """The Optim4RL optimizer: update = -lr * sign(g) exp(o1) / sqrt(exp(o2) + eps).

    With `meta_params=None` the shipped `pretrained("gridworld")` meta-parameters are used.
    Works with `optax.inject_hyperparams(optim4rl, static_args="meta_params")`.
    """
    if meta_params is None:
        from optim4rl.checkpoint import pretrained

        meta_params, _ = pretrained("gridworld")
    return learned(learning_rate, meta_params, "optim4rl", grad_clip=grad_clip, eps=eps)
