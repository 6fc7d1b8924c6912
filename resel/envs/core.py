"""The environment interface shared by every task: pure, gymnax-style, auto-resetting.

    obs, state = env.reset(key, params)
    obs, state, reward, done, info = env.step(key, state, action, params)

Convention for episode ends (one rule for every task):

- `done` is True when the episode ended at this step, by termination *or* time-out; the environment
  has then already auto-reset, so `obs` and `state` belong to the next episode's first step and the
  last observation of the ended episode is `info["final_obs"]`.
- `info["terminated"]` is True only for a true terminal state (robot fell, door reached, ...):
  bootstrap with `(1 - terminated)`, never with `(1 - done)`.
- `info["truncated"]` is True only for a time-out that is not also a termination
  (`done == terminated | truncated`, and the two are never both True).

`reward` is float32 of shape (), `done`/`terminated`/`truncated` are bool of shape ().
Every state carries `time` (steps taken in the episode); the time-out happens when
`time >= params.max_steps_in_episode`, which is data, so episode lengths can be vmapped too.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from resel.envs.spaces import Box, Discrete

State = TypeVar("State")
Params = TypeVar("Params")


class Environment(Generic[State, Params]):
    """Base class: subclasses implement `reset_env`, `step_env`, the spaces and `default_params`.

    Class attributes describe the task for people and agents:
    `family` (suite name), `hidden` (what the agent cannot observe), and `name` (registry name).
    """

    name: str = ""
    family: str = ""
    hidden: str = "nothing (fully observed)"

    @property
    def default_params(self) -> Params:
        raise NotImplementedError

    def reset_env(self, key: jax.Array, params: Params) -> tuple[jax.Array, State]:
        """First observation and state of a new episode."""
        raise NotImplementedError

    def step_env(
        self, key: jax.Array, state: State, action: jax.Array, params: Params
    ) -> tuple[jax.Array, State, jax.Array, jax.Array, dict[str, Any]]:
        """One transition without auto-reset: (obs, state, reward, terminated, info)."""
        raise NotImplementedError

    def observation_space(self, params: Params | None = None) -> Box:
        """Static description (numpy bounds); never depends on traced params values."""
        raise NotImplementedError

    def action_space(self, params: Params | None = None) -> Box | Discrete:
        """Static description (numpy bounds); never depends on traced params values."""
        raise NotImplementedError

    def episode_length(self, params: Params | None = None) -> int:
        """Maximum number of steps of an episode (the time-out)."""
        params = self.default_params if params is None else params
        return int(params.max_steps_in_episode)

    @partial(jax.jit, static_argnums=0)
    def reset(self, key: jax.Array, params: Params | None = None) -> tuple[jax.Array, State]:
        """Start an episode. `key`: PRNG key; returns (obs [obs_dim], state)."""
        params = self.default_params if params is None else params
        return self.reset_env(key, params)

    @partial(jax.jit, static_argnums=0)
    def step(
        self, key: jax.Array, state: State, action: jax.Array, params: Params | None = None
    ) -> tuple[jax.Array, State, jax.Array, jax.Array, dict[str, Any]]:
        """Advance one step and auto-reset when the episode ends (see the module docstring)."""
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        terminated = jnp.asarray(terminated, bool)
        timeout = state_st.time >= params.max_steps_in_episode
        truncated = jnp.logical_and(timeout, jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        # a select, not lax.cond: under vmap cond computes both branches anyway, and at batch 1
        # it copies the whole physics state (docs/envs.md, "Measurements behind defaults")
        obs_re, state_re = self.reset_env(key_reset, params)
        state = jax.tree.map(lambda r, s: jax.lax.select(done, r, s), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_obs": obs_st}
        return obs, state, jnp.asarray(reward, jnp.float32), done, info

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Wrapper(Environment[State, Params]):
    """Delegates everything to `env`; subclasses override what they change."""

    def __init__(self, env: Environment):
        self.env = env
        self.name = env.name
        self.family = env.family
        self.hidden = env.hidden

    @property
    def default_params(self) -> Params:
        return self.env.default_params

    def reset_env(self, key, params):
        return self.env.reset_env(key, params)

    def step_env(self, key, state, action, params):
        return self.env.step_env(key, state, action, params)

    def observation_space(self, params=None):
        return self.env.observation_space(params)

    def action_space(self, params=None):
        return self.env.action_space(params)

    def __getattr__(self, name: str):
        # reach attributes of the wrapped task (e.g. `obs_layout`, `brax_env`)
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)
