"""Brax locomotion tasks under the gymnax-style interface.

One class per kind of hidden information, all sharing `BraxTask`:

- `BraxTask`: Brax's own reward and termination (MDP check, and -P/-V via `ObservationMask`).
- `GravityTask`: gravity scaled by a factor drawn at reset from `params.gravity_scales`.
- `DirectionTask`: forward reward multiplied by a direction drawn at reset from `params.directions`.
- `VelocityTask`: reward `-|v_x - v*| - 0.05 |a|^2` with `v* ~ U(params.velocity_low, high)`.

The task value (gravity multiplier, direction, target velocity) is drawn at every reset, kept in
`state.task`, never observed, and reported as `info["task"]` (for analyses such as coloring
embeddings by gravity). Params hold the task distribution as data, so it can be vmapped and
evaluation can pass held-out tasks or a single fixed task (a one-element set).

Observation layout of every Brax locomotion env used here (brax 0.14, `_get_obs`):
`concat(q[k:], qd)` with the root's x (and for Ant y) position excluded, so the first
`obs_size - qd_size` entries are generalized positions and the remaining `qd_size` are velocities
(Hopper/Walker2d put the torso height at entry 0 and clip velocities to [-10, 10]).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import brax.envs
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from resel.envs.core import Environment
from resel.envs.spaces import Box

BACKENDS = ("spring", "generalized", "positional", "mjx")
DEFAULT_BACKEND = "spring"

BRAX_IDS = {
    "Ant": "ant",
    "HalfCheetah": "halfcheetah",
    "Hopper": "hopper",
    "Walker2d": "walker2d",
    "Humanoid": "humanoid",
}


@struct.dataclass
class BraxTaskState:
    """`brax`: Brax's own `State` (pipeline state, obs, reward, done, metrics); `task`: hidden
    task value (float32 scalar; 0 when there is none); `time`: steps taken in the episode."""

    brax: Any
    task: jax.Array
    time: jax.Array


@struct.dataclass
class LocomotionParams:
    max_steps_in_episode: int = 1000


@struct.dataclass
class GravityParams:
    """`gravity_scales`: float32 [K] multipliers of Brax's gravity, one drawn per episode."""

    gravity_scales: jax.Array
    max_steps_in_episode: int = 1000


@struct.dataclass
class DirectionParams:
    """`directions`: float32 [K] signs of the rewarded x direction, one drawn per episode."""

    directions: jax.Array
    max_steps_in_episode: int = 200


@struct.dataclass
class VelocityParams:
    """Target x velocity per episode: drawn from the fixed set `velocities` (float32 [K]) when it
    is given, else uniformly from [velocity_low, velocity_high]."""

    velocity_low: float = 0.0
    velocity_high: float = 3.0
    max_steps_in_episode: int = 200
    velocities: jax.Array | None = None


# robots whose observation is exactly concat(positions, velocities)
SPLIT_LAYOUT = ("Ant", "HalfCheetah", "Hopper", "Walker2d")


def make_brax_env(robot: str, backend: str, **kwargs):
    """Brax environment `robot` (a key of BRAX_IDS) on `backend`, checked and cached.

    Loading a model takes seconds, so one Brax env object is shared per (robot, backend, kwargs);
    tasks never mutate it (they copy it to change the system).
    """
    if robot not in BRAX_IDS:
        raise ValueError(f"unknown Brax robot {robot!r}; choose one of {list(BRAX_IDS)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown Brax backend {backend!r}; choose one of {BACKENDS}")
    return _cached_brax_env(robot, backend, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=64)
def _cached_brax_env(robot: str, backend: str, kwargs: tuple):
    return brax.envs.get_environment(BRAX_IDS[robot], backend=backend, **dict(kwargs))


class BraxTask(Environment):
    """A Brax robot with Brax's reward and termination; time-out after `episode_length` steps.

    Hidden: nothing (full observation). Actions: Box(ctrl_range), obs: Box(-inf, inf).
    """

    family = "locomotion"

    def __init__(
        self,
        robot: str,
        *,
        backend: str = DEFAULT_BACKEND,
        episode_length: int = 1000,
        **brax_kwargs,
    ):
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        self.robot = robot
        self.backend = backend
        self.brax_env = make_brax_env(robot, backend, **brax_kwargs)
        self.name = robot
        self._episode_length = int(episode_length)
        sys = self.brax_env.sys
        self.obs_size = int(self.brax_env.observation_size)
        self.num_velocities = int(sys.qd_size())
        self.num_positions = self.obs_size - self.num_velocities
        ctrl = np.asarray(sys.actuator.ctrl_range, dtype=np.float32)
        self._action = Box.make(ctrl[:, 0], ctrl[:, 1], (int(self.brax_env.action_size),))

    # ---- observation layout used by the -P/-V suites ----
    @property
    def position_indices(self) -> tuple[int, ...]:
        """Observation entries holding generalized positions (root x/y excluded by Brax)."""
        self._check_layout()
        return tuple(range(self.num_positions))

    @property
    def velocity_indices(self) -> tuple[int, ...]:
        """Observation entries holding generalized velocities."""
        self._check_layout()
        return tuple(range(self.num_positions, self.obs_size))

    def _check_layout(self) -> None:
        if self.robot not in SPLIT_LAYOUT:
            raise ValueError(
                f"{self.robot}'s observation is not concat(positions, velocities); "
                f"position/velocity splits exist for {SPLIT_LAYOUT}"
            )

    @property
    def default_params(self):
        return LocomotionParams(max_steps_in_episode=self._episode_length)

    # ---- hooks for the task families ----
    def sample_task(self, key: jax.Array, params) -> jax.Array:
        """Hidden task value for a new episode (float32 scalar)."""
        return jnp.float32(0.0)

    def brax_for(self, task: jax.Array):
        """The Brax env simulating `task` (the dynamics may depend on it)."""
        return self.brax_env

    def reward(self, brax_state, action: jax.Array, task: jax.Array) -> jax.Array:
        return brax_state.reward

    # ---- interface ----
    def reset_env(self, key, params):
        key_task, key_env = jax.random.split(key)
        task = self.sample_task(key_task, params)
        bstate = self.brax_for(task).reset(key_env)
        state = BraxTaskState(brax=bstate, task=task, time=jnp.int32(0))
        return bstate.obs, state

    def restart(self, key: jax.Array, state: BraxTaskState) -> BraxTaskState:
        """A new episode of the same hidden task: the robot back at a random start, time 0."""
        return state.replace(brax=self.brax_for(state.task).reset(key), time=jnp.int32(0))

    def step_env(self, key, state, action, params):
        action = jnp.clip(action, self._action.low, self._action.high)
        bstate = self.brax_for(state.task).step(state.brax, action)
        reward = self.reward(bstate, action, state.task)
        terminated = bstate.done > 0.5
        new = state.replace(brax=bstate, time=state.time + 1)
        return bstate.obs, new, reward, terminated, {"task": state.task}

    def observation_space(self, params=None) -> Box:
        return Box.make(-np.inf, np.inf, (self.obs_size,))

    def action_space(self, params=None) -> Box:
        return self._action


class GravityTask(BraxTask):
    """Gravity scaled by a hidden multiplier drawn at reset from `params.gravity_scales`.

    Hidden: the gravity multiplier (the observation is Brax's full observation).
    Episode: up to 1000 steps (Brax's termination when the robot falls).
    """

    family = "gravity"
    hidden = "the gravity multiplier"

    def __init__(self, robot: str, *, gravity_scales: np.ndarray, **kwargs):
        super().__init__(robot, **kwargs)
        self._scales = jnp.asarray(gravity_scales, jnp.float32)
        if self._scales.ndim != 1 or self._scales.size == 0:
            raise ValueError(f"gravity_scales must be a non-empty 1-d array, got {gravity_scales}")

    @property
    def default_params(self):
        return GravityParams(self._scales, max_steps_in_episode=self._episode_length)

    def sample_task(self, key, params):
        return jax.random.choice(key, params.gravity_scales)

    def brax_for(self, task):
        env = copy.copy(self.brax_env)
        sys = env.sys
        sys = sys.replace(gravity=sys.gravity * task)
        if hasattr(sys, "opt") and hasattr(sys.opt, "gravity"):  # read by the mjx backend
            sys = sys.replace(opt=sys.opt.replace(gravity=sys.opt.gravity * task))
        env.sys = sys
        return env


class DirectionTask(BraxTask):
    """Forward reward times a hidden direction (+1 run forward, -1 run backward).

    Reward: `d * v_x + (Brax's other terms: survival, control and contact costs)`.
    Hidden: the direction d. Episode: up to 200 steps.
    """

    family = "meta"
    hidden = "the rewarded direction"

    default_directions: tuple[float, ...] = (-1.0, 1.0)

    def __init__(self, robot: str, *, forward_metric: str, episode_length: int = 200, **kwargs):
        super().__init__(robot, episode_length=episode_length, **kwargs)
        self._forward_metric = forward_metric

    @property
    def default_params(self):
        directions = jnp.array(self.default_directions, jnp.float32)
        return DirectionParams(directions, max_steps_in_episode=self._episode_length)

    def sample_task(self, key, params):
        return jax.random.choice(key, params.directions)

    def reward(self, brax_state, action, task):
        forward = brax_state.metrics[self._forward_metric]
        return brax_state.reward + (task - 1.0) * forward


class AngleDirectionTask(DirectionTask):
    """AntDir as the release defines it: the hidden task g in {-1, +1} is an angle in radians
    (not a sign: "not 180 degree"), and the forward term is the torso's planar velocity along
    (cos g, sin g).

    Reward: `v_x cos g + v_y sin g + (Brax's other terms: survival, control and contact costs)`.
    """

    def reward(self, brax_state, action, task):
        m = brax_state.metrics
        along = m["x_velocity"] * jnp.cos(task) + m["y_velocity"] * jnp.sin(task)
        return brax_state.reward - m[self._forward_metric] + along


class VelocityTask(BraxTask):
    """Reward `-|v_x - v*| - 0.05 |a|^2` for a hidden target velocity `v* ~ U[low, high]`.

    Hidden: the target velocity v*. Episode: up to 200 steps.
    """

    family = "meta"
    hidden = "the target velocity"

    default_range: tuple[float, float] = (0.0, 3.0)

    def __init__(self, robot: str, *, episode_length: int = 200, ctrl_cost: float = 0.05, **kw):
        super().__init__(robot, episode_length=episode_length, **kw)
        self._ctrl_cost = ctrl_cost

    @property
    def default_params(self):
        low, high = self.default_range
        return VelocityParams(low, high, max_steps_in_episode=self._episode_length)

    def sample_task(self, key, params):
        if params.velocities is not None:
            return jax.random.choice(key, params.velocities)
        return jax.random.uniform(key, (), minval=params.velocity_low, maxval=params.velocity_high)

    def reward(self, brax_state, action, task):
        v = brax_state.metrics["x_velocity"]
        return -jnp.abs(v - task) - self._ctrl_cost * jnp.sum(jnp.square(action))
