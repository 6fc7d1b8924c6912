"""The per-coordinate networks of the learned optimizers, batched over coordinates.

Every scalar coordinate of every parameter is processed independently by the same small network, so
the networks below take whole arrays of coordinates: gradients `g` of any shape S and hidden states
of shape (*S, 8) per GRU, feature-last, so that one step is a few passes over the coordinates and a
state lines up with its parameter's leading axes (a sharding rule copied from the parameter shards the
state the same way). Meta-parameters use flax's layouts (`nn.GRUCell`, `nn.Dense`), so they can be
inspected and initialised with flax, but the step is written over all coordinates at once.

Kinds (spec: Lan et al. 2024, "Learning to Optimize for Reinforcement Learning"):

- ``optim4rl``: h1 <- GRU1(h1, g), h2 <- GRU2(h2, g^2), o_i = Dense_i(h_i);
  direction = sign(g) exp(o1) / sqrt(exp(o2) + eps).  514 meta-parameters, H = 16.
- ``lin``: h <- GRU(h, g), (o1, o2, o3) = Dense(h); direction = exp(o1) g + exp(o2) o3.  H = 8.
- ``l2lgd2``: h <- GRU(h, x(g)), o = Dense(h); direction = exp(o) g, with the preprocessing of
  Andrychowicz et al. (2016), p = 10: x = (log(|g| + 1e-8) / p, sign(g)) if |g| >= e^-p
  else (-1, e^p g).  H = 8.

The optax convention applies: a direction is *descended*, the update is -learning_rate * direction.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

MetaParams = dict[str, Any]

KINDS = ("optim4rl", "lin", "l2lgd2")
GRU_SIZE = 8
L2L_P = 10.0

# kind -> (GRU names with their input sizes, head names with their output sizes)
_LAYOUT = {
    "optim4rl": ({"gru_g": 1, "gru_g2": 1}, {"head_g": 1, "head_g2": 1}),
    "lin": ({"gru": 1}, {"head": 3}),
    "l2lgd2": ({"gru": 2}, {"head": 1}),
}


def check_kind(kind: str) -> str:
    """Return `kind` if it names a learned optimizer, else raise a ValueError listing the kinds."""
    if kind not in KINDS:
        raise ValueError(f"unknown learned-optimizer kind {kind!r}; kinds are {', '.join(KINDS)}")
    return kind


def hidden_size(kind: str) -> int:
    """Floats of recurrent state per optimised coordinate (16 for optim4rl, 8 otherwise)."""
    return GRU_SIZE * len(_LAYOUT[check_kind(kind)][0])


def init_meta_params(key: jax.Array, kind: str = "optim4rl") -> MetaParams:
    """Random meta-parameters of a learned optimizer, initialised as flax initialises the layers.

    Returns a dict of flax GRUCell parameter dicts (keys ir/iz/in/hr/hz/hn) and Dense parameter dicts
    (kernel (8, out), bias (out,)). At this initialisation Optim4RL is close to sign descent.
    """
    grus, heads = _LAYOUT[check_kind(kind)]
    keys = jax.random.split(key, len(grus) + len(heads))
    params: MetaParams = {}
    for k, (name, n_in) in zip(keys, grus.items(), strict=False):
        cell = nn.GRUCell(features=GRU_SIZE)
        params[name] = cell.init(k, jnp.zeros((GRU_SIZE,)), jnp.zeros((n_in,)))["params"]
    for k, (name, n_out) in zip(keys[len(grus) :], heads.items(), strict=True):
        params[name] = nn.Dense(n_out).init(k, jnp.zeros((GRU_SIZE,)))["params"]
    return params


def num_meta_params(meta_params: MetaParams) -> int:
    """Number of scalars in a meta-parameter tree (514 for optim4rl)."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(meta_params))


def _multiply_add(kernel: jax.Array, x: jax.Array) -> jax.Array:
    return sum(kernel[k] * x[..., k, None] for k in range(kernel.shape[0]))


@jax.custom_vjp
def _linear(kernel: jax.Array, x: jax.Array) -> jax.Array:
    """sum_k kernel[k] x[..., k]: (K, F) with (*S, K) -> (*S, F).

    Forward: K broadcast multiply-adds (K is 1, 2 or 8), which XLA fuses with the gates into one
    pass over the coordinates; as a matrix product each of the many small leaves of an agent
    becomes a separate library call (PPO with Optim4RL 1.3x -> 1.8x Adam's time). Backward:
    d kernel = x^T dy as one (K, N) x (N, F) product, instead of the K*F separate reductions over
    the coordinates that autodiff derives from the forward (a cpu-preset meta-iteration
    1.6 s -> 0.5 s, `python -m eval bench meta-train`).
    """
    return _multiply_add(kernel, x)


def _linear_fwd(kernel, x):
    return _multiply_add(kernel, x), (kernel, x)


def _linear_bwd(residuals, dy):
    kernel, x = residuals
    batch = "".join(chr(ord("a") + i) for i in range(x.ndim - 1))
    d_kernel = jnp.einsum(f"{batch}k,{batch}f->kf", x, dy)
    return d_kernel.astype(kernel.dtype), _multiply_add(kernel.T, dy).astype(x.dtype)


_linear.defvjp(_linear_fwd, _linear_bwd)


@jax.custom_jvp
def _sigmoid(x: jax.Array) -> jax.Array:
    """s(x) = (1 + tanh(x / 2)) / 2: equal to 1 / (1 + exp(-x)) to float32 rounding, and on CPU
    cheaper inside the fused GRU step (XLA's rational tanh instead of exp and a division; an
    Optim4RL update at 1e6 parameters 9-25% faster in interleaved runs).

    Derivative s' = s (1 - s), from the output as `jax.nn.sigmoid` has it. Autodiff of the tanh
    form keeps tanh(x / 2) as a second residual, which XLA recomputes inside many backward
    fusions: a cpu-preset meta-iteration took 1.4 s with it against 0.4 s with this rule.
    """
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    s = _sigmoid(x)
    return s, s * (1.0 - s) * dx


def gru_step(p: MetaParams, x: jax.Array, h: jax.Array) -> jax.Array:
    """One flax-GRUCell step for every coordinate at once, feature-last.

    x: (*S, d) inputs, h: (*S, 8) states -> (*S, 8), with
    r = s(Wir x + bir + Whr h), z = s(Wiz x + biz + Whz h),
    n = tanh(Win x + bin + r (Whn h + bhn)), h' = (1 - z) n + z h.
    """
    gate = lambda i, hidden: (
        _linear(p[i]["kernel"], x) + p[i]["bias"] + _linear(p[hidden]["kernel"], h)
    )
    r = _sigmoid(gate("ir", "hr"))
    z = _sigmoid(gate("iz", "hz"))
    n_in = _linear(p["in"]["kernel"], x) + p["in"]["bias"]
    n = jnp.tanh(n_in + r * (_linear(p["hn"]["kernel"], h) + p["hn"]["bias"]))
    return (1.0 - z) * n + z * h


def dense(p: MetaParams, h: jax.Array) -> jax.Array:
    """Dense head, feature-last: (*S, 8) -> (*S, out)."""
    return _linear(p["kernel"], h) + p["bias"]


def l2l_preprocess(g: jax.Array, p: float = L2L_P) -> jax.Array:
    """Andrychowicz et al. (2016) gradient preprocessing: (*S) -> (*S, 2)."""
    big = jnp.abs(g) >= jnp.exp(-p)
    first = jnp.where(big, jnp.log(jnp.abs(g) + 1e-8) / p, -1.0)
    second = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
    return jnp.stack([first, second], axis=-1)


def num_grus(kind: str) -> int:
    """Number of GRU(8) cells, hence of (*S, 8) state arrays per parameter leaf."""
    return len(_LAYOUT[check_kind(kind)][0])


def direction(
    kind: str,
    meta_params: MetaParams,
    g: jax.Array,
    hidden: tuple[jax.Array, ...],
    eps: float = 1e-8,
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """Learned descent direction of every coordinate. g: (*S) float32, hidden: one (*S, 8) per GRU.

    Returns (direction (*S), new hidden). States stay separate arrays per GRU: concatenating them
    costs a copy that, on CPU, took longer than the two GRU steps together.
    """
    if kind == "optim4rl":
        h1 = gru_step(meta_params["gru_g"], g[..., None], hidden[0])
        h2 = gru_step(meta_params["gru_g2"], (g * g)[..., None], hidden[1])
        o1 = dense(meta_params["head_g"], h1)[..., 0]
        o2 = dense(meta_params["head_g2"], h2)[..., 0]
        return jnp.sign(g) * jnp.exp(o1) / jnp.sqrt(jnp.exp(o2) + eps), (h1, h2)
    if kind == "lin":
        h = gru_step(meta_params["gru"], g[..., None], hidden[0])
        o = dense(meta_params["head"], h)
        return jnp.exp(o[..., 0]) * g + jnp.exp(o[..., 1]) * o[..., 2], (h,)
    if kind == "l2lgd2":
        h = gru_step(meta_params["gru"], l2l_preprocess(g), hidden[0])
        return jnp.exp(dense(meta_params["head"], h)[..., 0]) * g, (h,)
    raise ValueError(check_kind(kind))


def layout_mismatch(meta_params: MetaParams, kind: str) -> list[str]:
    """Differences between a tree's (path, shape) pairs and those of `kind` (empty if it matches)."""
    expected = jax.eval_shape(lambda: init_meta_params(jax.random.key(0), kind))
    want = {
        jax.tree_util.keystr(k): tuple(v.shape)
        for k, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    got = {
        jax.tree_util.keystr(k): tuple(jnp.shape(v))
        for k, v in jax.tree_util.tree_leaves_with_path(meta_params)
    }
    keys = sorted({k for k, _ in set(want.items()) ^ set(got.items())})
    return [f"{k}: {got.get(k, 'missing')} (expected {want.get(k, 'nothing')})" for k in keys]


def infer_kind(meta_params: MetaParams) -> str:
    """The kind whose layout the meta-parameter tree has; a ValueError if it matches none."""
    for kind in KINDS:
        if not layout_mismatch(meta_params, kind):
            return kind
    raise ValueError(
        f"meta-parameters match no learned-optimizer layout ({', '.join(KINDS)}); against "
        f"optim4rl they differ in {layout_mismatch(meta_params, 'optim4rl')[:4]}"
    )
