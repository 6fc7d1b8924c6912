"""The one agent contract: what A2C (meta_train), PPO (eval) and RESeL (resel) expose to the driver.

An agent is PureJaxRL's `make_train(config) -> train(key)` cut at its evaluation points, as pure
per-seed functions that the driver (`optim4rl.runtime.driver`) jits and vmaps over seeds:

    state = init(key)                            # one seed
    state = warmup(state)                        # optional: steps taken before training counts
    state, metrics = train_chunk(state, key)     # env steps up to the next evaluation point
    results = evaluate(state, key)               # {"return": scalar, ...}; optional

`metrics` is a dict of arrays; it must hold "finite" (a bool scalar: every loss and parameter of
the chunk finite). The driver reduces every other entry to one number per seed with a NaN-ignoring
mean (so an array of the chunk's finished-episode returns, NaN where none finished, reduces to
their mean). `steps(state)` is the environment steps taken so far; training ends when it reaches
`total_steps` (or after `num_chunks` chunks, where given).

Keys: `keys` says how the per-seed keys of each call are drawn from the seeds on the host, so an
agent can reproduce the key stream of its own `make_train` exactly (see `KeySchedule`).
Optimizers reach an agent as optax transforms; one that needs more than gradients and parameters
(activations, training progress) is a `optax.GradientTransformationExtraArgs`, and an agent that has
them passes them to `update` as keyword arguments, which other transforms ignore.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

State = Any
Metrics = dict[str, jax.Array]


def _fold(seeds: Sequence[int], *data: int) -> jax.Array:
    keys = jax.vmap(jax.random.key)(np.asarray(seeds))
    for d in data:
        keys = jax.vmap(lambda k, d=d: jax.random.fold_in(k, d))(keys)
    return keys


class KeySchedule(NamedTuple):
    """Host functions giving the keys [len(seeds)] of each call. Defaults: `init` gets
    `jax.random.key(seed)` (as PureJaxRL's `train(key)`), a chunk and an evaluation that key
    folded with a call tag (1, 2) and then the chunk index or the environment step."""

    init: Callable[[Sequence[int]], jax.Array] = lambda seeds: _fold(seeds)
    chunk: Callable[[Sequence[int], int], jax.Array] = lambda seeds, c: _fold(seeds, 1, c)
    evaluate: Callable[[Sequence[int], int, int], jax.Array] = lambda seeds, c, step: _fold(
        seeds, 2, step
    )


class Agent(NamedTuple):
    """One agent as pure per-seed functions (see the module docstring)."""

    name: str
    init: Callable[[jax.Array], State]
    train_chunk: Callable[[State, jax.Array], tuple[State, Metrics]]
    steps: Callable[[State], jax.Array]
    total_steps: int
    evaluate: Callable[[State, jax.Array], dict[str, jax.Array]] | None = None
    warmup: Callable[[State], State] | None = None
    keys: KeySchedule = KeySchedule()
    num_chunks: int | None = None  # also stop after this many chunks (float step counters)
    evaluate_at_start: bool = False  # also evaluate the fresh agent (a row at step 0)
    updates_per_chunk: int = 0  # gradient updates per chunk, for "sec_per_update" (0: none)
    # The build to redo a chunk with when its metrics say so (RESeL: a batch came out shorter
    # than batch_size, so the batch layout grows); host side: (metrics, alive seeds) -> Agent|None
    regrow: Callable[[dict[str, np.ndarray], np.ndarray], Agent | None] | None = None
    # What went wrong in seed i's non-finite chunk that started at `step`: (metrics, i, step)
    explain: Callable[[dict[str, np.ndarray], int, int], str] | None = None
    # JSON facts the checkpoint must record to rebuild this agent on resume (RESeL's layout)
    layout: dict[str, Any] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
