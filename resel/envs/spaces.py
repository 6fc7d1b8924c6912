"""Observation and action spaces: shape, dtype, bounds, discrete or continuous.

Plain (hashable, non-pytree) descriptions an agent reads to size its networks, in the spirit of
gymnax's spaces: `Box` for continuous arrays, `Discrete` for one integer in [0, n).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True, eq=False)
class Box:
    """Continuous array space: `low <= x <= high` elementwise, `x.shape == shape`.

    `low` and `high` are numpy arrays of `shape` (infinite bounds allowed).
    """

    low: np.ndarray
    high: np.ndarray
    shape: tuple[int, ...]
    dtype: np.dtype = np.dtype(np.float32)

    discrete = False

    @classmethod
    def make(cls, low, high, shape: tuple[int, ...], dtype=np.float32) -> Box:
        """Broadcast scalar or array bounds to `shape`."""
        low = np.broadcast_to(np.asarray(low, dtype=dtype), shape).copy()
        high = np.broadcast_to(np.asarray(high, dtype=dtype), shape).copy()
        if np.any(low > high):
            raise ValueError(f"Box bounds have low > high: low={low}, high={high}")
        return cls(low, high, tuple(shape), np.dtype(dtype))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform in the bounds; coordinates with infinite bounds are standard normal."""
        finite = np.isfinite(self.low) & np.isfinite(self.high)
        low = np.where(finite, self.low, 0.0)
        high = np.where(finite, self.high, 1.0)
        k1, k2 = jax.random.split(key)
        u = jax.random.uniform(k1, self.shape, minval=low, maxval=high)
        n = jax.random.normal(k2, self.shape)
        return jnp.where(finite, u, n).astype(self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        """True when `x` has the shape and lies in the bounds."""
        x = jnp.asarray(x)
        if x.shape != self.shape:
            return jnp.array(False)
        return jnp.all((x >= self.low) & (x <= self.high))

    def __repr__(self) -> str:
        return f"Box(shape={self.shape}, dtype={self.dtype.name}, low={self.low}, high={self.high})"


@dataclass(frozen=True, eq=False)
class Discrete:
    """One integer action in `[0, n)`, shape `()`, dtype int32."""

    n: int
    dtype: np.dtype = np.dtype(np.int32)

    discrete = True
    shape: tuple[int, ...] = ()

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (), 0, self.n, dtype=self.dtype)

    def contains(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.shape != ():
            return jnp.array(False)
        return (x >= 0) & (x < self.n)

    def __repr__(self) -> str:
        return f"Discrete({self.n})"
