"""Composable wrappers: hide part of the observation, append the last reward."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from resel.envs.core import Environment, Wrapper
from resel.envs.spaces import Box


class ObservationMask(Wrapper):
    """Keep only `indices` of the observation: `obs -> obs[indices]` (also for `final_obs`).

    This is how the -P (positions only) and -V (velocities only) occlusions are built.
    """

    def __init__(self, env: Environment, indices: Sequence[int], hidden: str):
        super().__init__(env)
        full = env.observation_space(env.default_params)
        idx = np.asarray(indices, dtype=np.int32)
        if idx.ndim != 1 or idx.size == 0:
            raise ValueError(f"ObservationMask needs a non-empty 1-d index list, got {indices!r}")
        if idx.min() < 0 or idx.max() >= full.shape[0]:
            raise ValueError(f"indices {idx.tolist()} out of range for observation {full.shape}")
        self.indices = idx
        self.hidden = hidden

    def reset_env(self, key, params):
        obs, state = self.env.reset_env(key, params)
        return obs[self.indices], state

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
        return obs[self.indices], state, reward, terminated, info

    def observation_space(self, params=None) -> Box:
        full = self.env.observation_space(params)
        return Box.make(full.low[self.indices], full.high[self.indices], (self.indices.size,))


@struct.dataclass
class RewardState:
    inner: object
    time: jax.Array


class ObserveReward(Wrapper):
    """Append the previous step's reward to the observation: `[obs, r_{t-1}]` (0 after reset).

    For the hidden-reward tasks an agent must see rewards to infer the task; RESeL feeds the last
    reward through its own pre-encoder, other agents can use this wrapper instead.
    """

    def reset_env(self, key, params):
        obs, state = self.env.reset_env(key, params)
        return jnp.append(obs, 0.0), RewardState(state, state.time)

    def step_env(self, key, state, action, params):
        obs, inner, reward, terminated, info = self.env.step_env(key, state.inner, action, params)
        obs = jnp.append(obs, jnp.asarray(reward, obs.dtype))
        return obs, RewardState(inner, inner.time), reward, terminated, info

    def observation_space(self, params=None) -> Box:
        full = self.env.observation_space(params)
        low = np.append(full.low, -np.inf)
        high = np.append(full.high, np.inf)
        return Box.make(low, high, (full.shape[0] + 1,))
