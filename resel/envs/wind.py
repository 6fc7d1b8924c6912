"""Wind: a 2-d point robot pushed by a hidden constant wind, rewarded only near a fixed goal.

    p_0 = (0, 0),  p_{t+1} = p_t + clip(a_t, -0.1, 0.1) + w,   w one of a fixed set ~ U(-0.08, 0.08)^2
    r_t = 1  if |p_{t+1} - g| <= 0.03 else 0,   g = (0, 1)   (the release's wind.py)

Observation: the position p (2,). Hidden: the wind w, inferable from how positions move.
Episode: exactly 75 steps, never terminates (every episode ends in a time-out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from resel.envs import task_sets
from resel.envs.core import Environment
from resel.envs.spaces import Box

MAX_ACTION = 0.1  # actions are clipped to [-0.1, 0.1]^2


@struct.dataclass
class WindState:
    pos: jax.Array  # float32 [2]
    wind: jax.Array  # float32 [2], hidden
    time: jax.Array


@struct.dataclass
class WindParams:
    """The wind of an episode: one of the fixed set `winds` (float32 [K, 2]) when it is given, else
    drawn uniformly from the box [wind_low, wind_high] (each [2]; equal bounds fix it)."""

    wind_low: jax.Array = struct.field(default_factory=lambda: jnp.full(2, -0.08, jnp.float32))
    wind_high: jax.Array = struct.field(default_factory=lambda: jnp.full(2, 0.08, jnp.float32))
    goal: jax.Array = struct.field(default_factory=lambda: jnp.array([0.0, 1.0], jnp.float32))
    goal_radius: float = 0.03
    max_steps_in_episode: int = 75
    winds: jax.Array | None = None


class Wind(Environment):
    """Point robot with hidden wind (see module docstring). Actions: Box([-0.1, 0.1]^2)."""

    family = "meta"
    hidden = "the wind vector"

    def __init__(
        self,
        *,
        wind: tuple[float, float] | None = None,
        split: str | None = "train",
        seed: int = task_sets.TASK_SEED,
        episode_length: int = 75,
    ):
        """`wind` fixes the wind; `split` ("train" 40, "test" 20 held out, "all" 60) draws from the
        release's fixed wind set split by `seed` (`task_sets.winds`); `split=None`: uniform in
        U(-0.08, 0.08)^2."""
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.name = "Wind"
        self._wind = None if wind is None else np.asarray(wind, np.float32).reshape(2)
        self._winds = None if split is None or wind is not None else task_sets.winds(split, seed)
        self._episode_length = episode_length

    @property
    def default_params(self) -> WindParams:
        params = WindParams(max_steps_in_episode=self._episode_length)
        if self._wind is not None:
            params = params.replace(
                wind_low=jnp.asarray(self._wind), wind_high=jnp.asarray(self._wind)
            )
        if self._winds is not None:
            params = params.replace(winds=jnp.asarray(self._winds))
        return params

    def reset_env(self, key, params):
        if params.winds is not None:
            wind = params.winds[jax.random.randint(key, (), 0, params.winds.shape[0])]
        else:
            wind = jax.random.uniform(key, (2,), minval=params.wind_low, maxval=params.wind_high)
        state = WindState(jnp.zeros(2, jnp.float32), wind, jnp.int32(0))
        return state.pos, state

    def step_env(self, key, state, action, params):
        action = jnp.clip(action, -MAX_ACTION, MAX_ACTION)
        pos = state.pos + action + state.wind
        dist = jnp.linalg.norm(pos - params.goal)
        reward = jnp.where(dist <= params.goal_radius, 1.0, 0.0)
        new = state.replace(pos=pos, time=state.time + 1)
        return pos, new, reward, jnp.array(False), {"task": state.wind}

    def observation_space(self, params=None) -> Box:
        return Box.make(-np.inf, np.inf, (2,))

    def action_space(self, params=None) -> Box:
        return Box.make(-MAX_ACTION, MAX_ACTION, (2,))
