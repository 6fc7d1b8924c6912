"""The selective scan of a Mamba block, three numerically equal ways, with hidden-state resets.

Recurrence (per channel d and state index n), with a per-step reset flag `start`:

    h_t = exp(dt_t * A) * (1 - start_t) * h_{t-1} + dt_t * B_t * u_t
    y_t = <h_t, C_t> + D * u_t

Shapes: u, dt: (batch, T, d); A: (d, n); B, C: (batch, T, n); D: (d,); start: (batch, T).

- "parallel": `jax.lax.associative_scan` over time (fast on GPU/TPU; materialises (batch, T, d, n)).
- "sequential": `jax.lax.scan` one step at a time (fastest on CPU; state (batch, d, n) only).
- "chunked": sequential over chunks, parallel inside each chunk (a middle ground).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

METHODS = ("parallel", "sequential", "chunked")


def default_method() -> str:
    """Per-backend default: sequential on CPU (measured faster there), parallel on accelerators."""
    return "sequential" if jax.default_backend() == "cpu" else "parallel"


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def _discretize(u, dt, A, B, start):
    """dA: exp(dt A) (1 - start), dBu: dt B u; each (batch, T, d, n)."""
    keep = (1.0 - start.astype(u.dtype))[..., None, None]
    dA = jnp.exp(dt[..., None] * A) * keep
    dBu = (dt * u)[..., None] * B[:, :, None, :]
    return dA, dBu


def _parallel(u, dt, A, B, C, start, h0):
    dA, dBu = _discretize(u, dt, A, B, start)
    if h0 is not None:  # fold the initial state into the first step's input
        dBu = dBu.at[:, 0].add(dA[:, 0] * h0)
    _, h = jax.lax.associative_scan(_combine, (dA, dBu), axis=1)
    return jnp.einsum("btdn,btn->btd", h, C), h[:, -1]


def _sequential(u, dt, A, B, C, start, h0):
    def step(h, xs):
        u_t, dt_t, B_t, C_t, s_t = xs
        keep = (1.0 - s_t.astype(u.dtype))[:, None, None]
        h = jnp.exp(dt_t[..., None] * A) * keep * h + (dt_t * u_t)[..., None] * B_t[:, None, :]
        return h, jnp.einsum("bdn,bn->bd", h, C_t)

    if h0 is None:
        h0 = jnp.zeros(u.shape[:1] + A.shape, u.dtype)
    xs = tuple(jnp.swapaxes(x, 0, 1) for x in (u, dt, B, C, start))
    h_last, y = jax.lax.scan(step, h0, xs)
    return jnp.swapaxes(y, 0, 1), h_last


def _chunked(u, dt, A, B, C, start, h0, chunk):
    batch, T = u.shape[:2]
    pad = (-T) % chunk
    if pad:  # padded steps come after the data and only change the (discarded) final state
        u, dt, B, C = (jnp.pad(x, ((0, 0), (0, pad), (0, 0))) for x in (u, dt, B, C))
        start = jnp.pad(start, ((0, 0), (0, pad)))
    n_chunks = (T + pad) // chunk

    def split(x):
        return jnp.swapaxes(x.reshape((batch, n_chunks, chunk) + x.shape[2:]), 0, 1)

    def step(h, xs):
        u_c, dt_c, B_c, C_c, s_c = xs
        y, h = _parallel(u_c, dt_c, A, B_c, C_c, s_c, h)
        return h, y

    if h0 is None:
        h0 = jnp.zeros((batch,) + A.shape, u.dtype)
    h_last, y = jax.lax.scan(step, h0, tuple(split(x) for x in (u, dt, B, C, start)))
    y = jnp.swapaxes(y, 0, 1).reshape((batch, n_chunks * chunk, -1))[:, :T]
    return y, h_last


def selective_scan(
    u: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    start: jax.Array,
    *,
    h0: jax.Array | None = None,
    method: str | None = None,
    chunk: int = 64,
) -> tuple[jax.Array, jax.Array]:
    """Run the selective SSM over time; returns y (batch, T, d) and the last state (batch, d, n).

    `h0` (batch, d, n) is the state before the first step (zeros if None); a start flag on the
    first step discards it, exactly as later resets do.
    """
    method = method or default_method()
    if method == "parallel":
        y, h = _parallel(u, dt, A, B, C, start, h0)
    elif method == "sequential":
        y, h = _sequential(u, dt, A, B, C, start, h0)
    elif method == "chunked":
        y, h = _chunked(u, dt, A, B, C, start, h0, chunk)
    else:
        raise ValueError(f"unknown selective-scan method {method!r}; choose one of {METHODS}")
    return y + u * D, h


def selective_step(
    h: jax.Array,
    u: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: jax.Array,
    start: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One step of the recurrence for acting: h (batch, d, n), u/dt (batch, d), B/C (batch, n)."""
    keep = (1.0 - start.astype(u.dtype))[:, None, None]
    h = jnp.exp(dt[..., None] * A) * keep * h + (dt * u)[..., None] * B[:, None, :]
    return jnp.einsum("bdn,bn->bd", h, C) + D * u, h
