"""Composable wrappers: hide part of the observation, append the last reward, several episodes of
one task as one meta-episode."""

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


def _one_more_entry(space: Box, low: float, high: float) -> Box:
    """`space` with one more last entry bounded by [low, high]."""
    return Box.make(np.append(space.low, low), np.append(space.high, high), (space.shape[0] + 1,))


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
        return _one_more_entry(self.env.observation_space(params), -np.inf, np.inf)


@struct.dataclass
class EpisodesState:
    inner: object
    episode: jax.Array  # episodes of this task finished so far
    # the meta-episode's clock: episode * H + steps into the current episode (H the inner horizon)
    time: jax.Array


class EpisodesPerTask(Wrapper):
    """`episodes` episodes of one hidden task as one meta-episode (VariBAD's BAMDP, which the
    RESeL release uses for AntDir, CheetahDir and HalfCheetahVel with `max_rollouts_per_task: 2`).

    The observation gains a last entry, the "done flag": 1 on the step that ended an inner
    episode before the last, else 0. On that step the robot restarts for the next episode of the
    same task (`env.restart`), but the observation returned is still the ended episode's last one
    with the flag set, as in the release's wrapper; the agent sees the new start after its next
    action. An inner termination before the last episode starts the next episode; only the last
    one ends the meta-episode. Every inner episode has its own horizon H: an episode that
    terminates early skips the rest of its H steps on the meta-episode's clock (`time`), so the
    meta-episode ends when its last inner episode ends, as in the release's `VariBadWrapper`
    (horizon 5, a first episode that terminates after 2 steps: 2 + 5 = 7 steps, not 10).
    `max_steps_in_episode` of the params is `episodes` x H, and returns sum over the episodes.
    """

    def __init__(self, env: Environment, episodes: int):
        super().__init__(env)
        if episodes < 2:
            raise ValueError(f"EpisodesPerTask needs episodes >= 2, got {episodes}")
        if not hasattr(env, "restart"):
            raise ValueError(f"{env!r} cannot restart an episode of the same task")
        self.episodes = episodes

    @property
    def default_params(self):
        params = self.env.default_params
        return params.replace(max_steps_in_episode=params.max_steps_in_episode * self.episodes)

    def reset_env(self, key, params):
        obs, inner = self.env.reset_env(key, params)
        return jnp.append(obs, 0.0), EpisodesState(inner, jnp.int32(0), jnp.int32(0))

    def step_env(self, key, state, action, params):
        key_step, key_restart = jax.random.split(key)
        obs, inner, reward, terminated, info = self.env.step_env(
            key_step, state.inner, action, params
        )
        horizon = params.max_steps_in_episode // self.episodes
        ended = jnp.logical_or(terminated, inner.time >= horizon)
        last = state.episode >= self.episodes - 1
        restart = jnp.logical_and(ended, jnp.logical_not(last))
        fresh = self.env.restart(key_restart, inner)
        inner = jax.tree.map(lambda f, s: jax.lax.select(restart, f, s), fresh, inner)
        obs = jnp.append(obs, restart.astype(obs.dtype))
        clock = jnp.where(restart, (state.episode + 1) * horizon, state.time + 1)
        new = EpisodesState(inner, state.episode + restart.astype(jnp.int32), clock)
        info = {**info, "episode_ended": ended}
        return obs, new, reward, jnp.logical_and(terminated, last), info

    def observation_space(self, params=None) -> Box:
        return _one_more_entry(self.env.observation_space(params), 0.0, 1.0)
