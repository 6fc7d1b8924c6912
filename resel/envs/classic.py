"""gymnax tasks: Pendulum and CartPole (classic occlusion suite) and bsuite's MemoryChain.

Observation layouts (gymnax 1.0.1):
- Pendulum: `[cos(theta), sin(theta), theta_dot]`; -P keeps `[0, 1]`, -V keeps `[2]`.
  Never terminates; time-out after 200 steps. Action: torque, Box([-2, 2], shape (1,)).
- CartPole: `[x, x_dot, theta, theta_dot]`; -P keeps `[0, 2]`, -V keeps `[1, 3]`.
  Terminates when the pole falls or the cart leaves the track; time-out after 200 steps (the
  release's gym CartPole-v0; `episode_length=500` for v1).
  Action: Discrete(2).
- MemoryChain: `[1 - t/memory_length, query (last step only), context bits (first step only)]`;
  the context must be remembered for `memory_length` steps; episode of `memory_length + 1` steps.
"""

from __future__ import annotations

import gymnax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces as gspaces

from resel.envs.core import Environment
from resel.envs.spaces import Box, Discrete

OBS_LAYOUTS = {
    "Pendulum": {"P": (0, 1), "V": (2,)},
    "CartPole": {"P": (0, 2), "V": (1, 3)},
}


def _convert_space(space) -> Box | Discrete:
    if isinstance(space, gspaces.Discrete):
        return Discrete(int(space.n))
    low = np.asarray(space.low, dtype=np.float32)
    high = np.asarray(space.high, dtype=np.float32)
    return Box.make(low, high, tuple(space.shape))


class GymnaxTask(Environment):
    """A gymnax environment under this package's interface (same dynamics, same params).

    The gymnax params dataclass is used as is (`max_steps_in_episode` is its time-out).
    """

    def __init__(self, gymnax_id: str, *, name: str, family: str, hidden: str, **kwargs):
        self.gymnax_env, self._params = gymnax.make(gymnax_id, **kwargs)
        self.gymnax_id = gymnax_id
        self.name = name
        self.family = family
        self.hidden = hidden
        self._action = _convert_space(self.gymnax_env.action_space(self._params))

    @property
    def default_params(self):
        return self._params

    def reset_env(self, key, params):
        obs, state = self.gymnax_env.reset_env(key, params)
        return jnp.asarray(obs, jnp.float32), state

    def step_env(self, key, state, action, params):
        if isinstance(self._action, Discrete):
            action = jnp.asarray(action, jnp.int32)
        obs, state, reward, terminated, _ = self.gymnax_env.step_env(key, state, action, params)
        obs = jnp.asarray(obs, jnp.float32)
        return obs, state, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool), {}

    def observation_space(self, params=None) -> Box:
        # spaces are static descriptions: built from the default params, so they work under jit
        space = self.gymnax_env.observation_space(self._params)
        return Box.make(np.asarray(space.low), np.asarray(space.high), tuple(space.shape))

    def action_space(self, params=None):
        return self._action


def pendulum() -> GymnaxTask:
    """Swing-up Pendulum, 200 steps, never terminates; reward -(theta^2 + 0.1 theta_dot^2 + ...)."""
    return GymnaxTask("Pendulum-v1", name="Pendulum", family="classic", hidden="nothing")


def cartpole(*, episode_length: int = 200) -> GymnaxTask:
    """CartPole balance, +1 per step, terminates on failure, time-out after `episode_length` steps.

    200 is the release's gym CartPole-v0 (its -P/-V tasks wrap v0); gym's v1 only raises the limit
    to 500 (`episode_length=500`, gymnax's CartPole-v1 default). The dynamics are the same.
    """
    if episode_length < 1:
        raise ValueError(f"episode_length must be >= 1, got {episode_length}")
    task = GymnaxTask("CartPole-v1", name="CartPole", family="classic", hidden="nothing")
    task._params = task._params.replace(max_steps_in_episode=episode_length)
    return task


class MemoryChainTask(GymnaxTask):
    """gymnax MemoryChain with its observation bounds stated exactly."""

    def observation_space(self, params=None) -> Box:
        bits = self.gymnax_env.num_bits
        low = np.concatenate([[-1.0, 0.0], -np.ones(bits)])  # float error near 0
        high = np.concatenate([[1.0, max(bits - 1, 0)], np.ones(bits)])
        return Box.make(low, high, (bits + 2,))


def memory_chain(*, memory_length: int = 5, num_bits: int = 1) -> MemoryChainTask:
    """bsuite MemoryChain: the context shown at t=0 must be recalled at the query step.

    Hidden: the context after the first step. Episode: `memory_length + 1` steps, ending in a
    termination; reward +1 (correct) / -1 (wrong) at the last step, 0 otherwise. Discrete(2).
    """
    if memory_length < 1 or num_bits < 1:
        raise ValueError(
            f"MemoryChain needs memory_length >= 1 and num_bits >= 1, "
            f"got {memory_length} and {num_bits}"
        )
    task = MemoryChainTask(
        "MemoryChain-bsuite",
        name="MemoryChain",
        family="credit_assignment",
        hidden="the context bits after the first step",
        num_bits=num_bits,
    )
    task._params = task._params.replace(
        memory_length=memory_length, max_steps_in_episode=memory_length + 1
    )
    return task
