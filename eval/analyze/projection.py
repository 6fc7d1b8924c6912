"""2-d projections of embeddings, in numpy: PCA and exact t-SNE (van der Maaten & Hinton, 2008).

t-SNE here is the exact O(n^2) method, meant for a few thousand points (subsample larger sets):
  p_{j|i} = exp(-beta_i |x_i - x_j|^2) / sum_{k != i} (...), beta_i set by bisection so that the
            entropy of p_{.|i} is log(perplexity);  P = (p_{j|i} + p_{i|j}) / 2n
  q_ij    = (1 + |y_i - y_j|^2)^-1 / sum_{k != l} (1 + |y_k - y_l|^2)^-1
  KL(P||Q) is minimised by gradient descent with momentum and per-coordinate gains,
  dKL/dy_i = 4 sum_j (p_ij - q_ij) (1 + |y_i - y_j|^2)^-1 (y_i - y_j),
  with P multiplied by `exaggeration` for the first `exaggeration_steps` steps.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def pca(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA by SVD of the centred data. x (n, d) -> (scores (n, k), components (k, d),
    explained-variance ratios (k,)); scores = (x - mean) @ components.T."""
    x = np.asarray(x, np.float64)
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    var = s**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    return xc @ vt[:k].T, vt[:k], ratio[:k]


def _sq_distances(x, xp=np):
    """|x_i - x_j|^2 (n, n) of rows x (n, d), with numpy or jax.numpy as `xp`."""
    sq = xp.sum(x * x, axis=1)
    return xp.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)


def conditional_probabilities(
    d2: np.ndarray, perplexity: float, iters: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Rows p_{.|i} of a Gaussian kernel on squared distances d2 (n, n), each with entropy
    log(perplexity) (nats). Returns (P_cond (n, n), beta (n,)); bisection on log beta, all rows at
    once."""
    n = d2.shape[0]
    if not 1.0 <= perplexity < n:
        raise ValueError(f"perplexity must lie in [1, n - 1 = {n - 1}], got {perplexity}")
    target = np.log(perplexity)
    off = ~np.eye(n, dtype=bool)
    # distances relative to each row's nearest neighbour: same p, no underflow
    d = np.where(off, d2, np.inf)
    d = d - d.min(axis=1, keepdims=True)
    lo, hi = np.full(n, -50.0), np.full(n, 50.0)
    for _ in range(iters):
        log_beta = (lo + hi) / 2
        p = np.exp(-np.exp(log_beta)[:, None] * d)
        p /= p.sum(axis=1, keepdims=True)
        h = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
        # entropy falls as beta grows: too much entropy -> raise beta
        lo = np.where(h > target, log_beta, lo)
        hi = np.where(h > target, hi, log_beta)
    return p, np.exp((lo + hi) / 2)


def joint_probabilities(x: np.ndarray, perplexity: float) -> np.ndarray:
    """Symmetrised P = (P_cond + P_cond^T) / 2n of points x (n, d); sums to 1, zero diagonal."""
    p, _ = conditional_probabilities(_sq_distances(np.asarray(x, np.float64)), perplexity)
    p = (p + p.T) / (2 * p.shape[0])
    return np.maximum(p, 1e-12 * np.max(p)) * ~np.eye(p.shape[0], dtype=bool)


def kl_and_gradient(p: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """KL(P || Q(y)) and its gradient with respect to y (n, k), Student-t kernel Q."""
    w = 1.0 / (1.0 + _sq_distances(y, jnp))
    w = w * (1.0 - jnp.eye(y.shape[0], dtype=y.dtype))
    q = jnp.maximum(w / w.sum(), 1e-30)
    kl = jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0) / q), 0.0))
    m = (p - q) * w
    grad = 4.0 * (m.sum(axis=1)[:, None] * y - m @ y)
    return kl, grad


@partial(jax.jit, static_argnames=("steps", "exaggeration_steps"))
def _descend(p, y, lr, exaggeration, steps: int, exaggeration_steps: int):
    def body(t, carry):
        y, velocity, gains = carry
        early = t < exaggeration_steps
        _, grad = kl_and_gradient(jnp.where(early, exaggeration, 1.0) * p, y)
        gains = jnp.where(jnp.sign(grad) != jnp.sign(velocity), gains + 0.2, gains * 0.8)
        gains = jnp.maximum(gains, 0.01)
        velocity = jnp.where(early, 0.5, 0.8) * velocity - lr * gains * grad
        y = y + velocity
        return y - y.mean(axis=0), velocity, gains

    y, _, _ = jax.lax.fori_loop(0, steps, body, (y, jnp.zeros_like(y), jnp.ones_like(y)))
    return y, kl_and_gradient(p, y)[0]


def tsne(
    x: np.ndarray,
    k: int = 2,
    perplexity: float = 30.0,
    steps: int = 1000,
    learning_rate: float | None = None,
    exaggeration: float = 12.0,
    exaggeration_steps: int = 250,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """Exact t-SNE of x (n, d) -> (y (n, k), final KL). learning_rate None = max(n / 48, 50)
    (the "auto" rule, n / exaggeration / 4); momentum 0.5 then 0.8; gains +0.2 / x0.8. The
    descent is one jitted loop (float32)."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    p = joint_probabilities(x, min(perplexity, (n - 1) / 3))
    lr = max(n / exaggeration / 4, 50.0) if learning_rate is None else learning_rate
    y0 = np.random.default_rng(seed).normal(0.0, 1e-4, (n, k))
    y, kl = _descend(
        jnp.asarray(p, jnp.float32), jnp.asarray(y0, jnp.float32), lr, exaggeration,
        steps=steps, exaggeration_steps=exaggeration_steps,
    )  # fmt: skip
    return np.asarray(y, np.float64), float(kl)
