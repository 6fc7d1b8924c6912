"""The selective scan of a Mamba block, three numerically equal ways, with hidden-state resets.

Recurrence (per channel d and state index n), with a per-step reset flag `start`:

    h_t = exp(dt_t * A) * (1 - start_t) * h_{t-1} + dt_t * B_t * u_t
    y_t = <h_t, C_t> + D * u_t

Shapes: u, dt: (batch, T, d); A: (d, n); B, C: (batch, T, n); D: (d,); start: (batch, T).

- "parallel": `jax.lax.associative_scan` over time (fast on GPU/TPU; materialises (batch, T, d, n)).
- "sequential": `jax.lax.scan` one step at a time (fastest on CPU), with a hand-written backward
  pass (a reverse-time scan) that stores one (T, batch, d, n) buffer where autodiff stored four.
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


def _time_major(x):
    return jnp.swapaxes(x, 0, 1)


def _state_update(h, u_t, dt_t, A, B_t, keep_t):
    """One step: dA_t = exp(dt_t A) keep_t, h_t = dA_t h + dt_t u_t B_t; returns (h_t, dA_t).

    h (batch, d, n), u_t/dt_t (batch, d), B_t (batch, n), keep_t (batch,) = 1 - start_t."""
    dA_t = jnp.exp(dt_t[..., None] * A) * keep_t[:, None, None]
    return dA_t * h + (dt_t * u_t)[..., None] * B_t[:, None, :], dA_t


@jax.custom_vjp
def _sequential_scan(u, dt, A, B, C, start, h0):
    y, h_last, _ = _sequential_forward(u, dt, A, B, C, start, h0)
    return y, h_last


def _sequential_forward(u, dt, A, B, C, start, h0):
    """One step at a time; also returns the time-major inputs and every step's state before its
    update, h_{t-1} (T, batch, d, n), for the backward pass."""

    def step(h, xs):
        u_t, dt_t, B_t, C_t, k_t = xs
        h_new, _ = _state_update(h, u_t, dt_t, A, B_t, k_t)
        return h_new, (jnp.einsum("bdn,bn->bd", h_new, C_t), h)

    xs = tuple(_time_major(x) for x in (u, dt, B, C, 1.0 - start))
    h_last, (y, h_prev) = jax.lax.scan(step, h0, xs)
    return _time_major(y), h_last, (xs, h_prev)


def _sequential_fwd(u, dt, A, B, C, start, h0):
    y, h_last, (xs, h_prev) = _sequential_forward(u, dt, A, B, C, start, h0)
    return (y, h_last), (A, start, xs, h_prev)


def _sequential_bwd(res, cotangents):
    """The reverse-time recurrence of the state's gradient g_t = dL/dh_t:

        g_t = gy_t C_t + g_{t+1} dA_{t+1},   dA_t = exp(dt_t A) (1 - start_t)
        du_t = dt_t <g_t, B_t>,   ddt_t = <g_t h_{t-1} dA_t, A> + u_t <g_t, B_t>
        dA = sum_t,b g_t h_{t-1} dA_t dt_t,   dB_t = sum_d g_t dt_t u_t,   dC_t = sum_d gy_t h_t

    Only h_{t-1} is stored by the forward pass (autodiff of the loop kept four such
    (T, batch, d, n) buffers); dA_t and h_t are recomputed in the loop.
    """
    A, start, xs, h_prev = res
    gy, g_last = cotangents

    def step(carry, xs):
        g, gA = carry
        u_t, dt_t, B_t, C_t, k_t, hp_t, gy_t = xs
        h_t, dA_t = _state_update(hp_t, u_t, dt_t, A, B_t, k_t)
        g = g + gy_t[..., None] * C_t[:, None, :]
        g_dA = g * hp_t * dA_t
        gB = jnp.einsum("bdn,bn->bd", g, B_t)
        grads = (
            gB * dt_t,  # du
            jnp.einsum("bdn,dn->bd", g_dA, A) + gB * u_t,  # ddt
            jnp.einsum("bdn,bd->bn", g, dt_t * u_t),  # dB
            jnp.einsum("bdn,bd->bn", h_t, gy_t),  # dC
        )
        return (g * dA_t, gA + jnp.einsum("bdn,bd->dn", g_dA, dt_t)), grads

    xs = xs + (h_prev, _time_major(gy))
    (g0, gA), (du, ddt, dB, dC) = jax.lax.scan(step, (g_last, jnp.zeros_like(A)), xs, reverse=True)
    du, ddt, dB, dC = (_time_major(x) for x in (du, ddt, dB, dC))
    return du, ddt, gA, dB, dC, jnp.zeros_like(start), g0


_sequential_scan.defvjp(_sequential_fwd, _sequential_bwd)


def _sequential(u, dt, A, B, C, start, h0):
    if h0 is None:
        h0 = jnp.zeros(u.shape[:1] + A.shape, u.dtype)
    return _sequential_scan(u, dt, A, B, C, start.astype(u.dtype), h0)


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
    h, _ = _state_update(h, u, dt, A, B, 1.0 - start.astype(u.dtype))
    return jnp.einsum("bdn,bn->bd", h, C) + D * u, h
