"""Factories of the built-in task suites, registered under their names on import.

Classic occlusion (-P / -V of Pendulum, CartPole and the Brax robots), full-observation Brax
locomotion, the gravity suite (training / held-out split), the meta-RL tasks with a hidden reward
(AntDir, CheetahDir, HalfCheetahVel, Wind) and credit assignment (Key-to-Door, MemoryChain).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax.numpy as jnp

from resel.envs import classic, locomotion, task_sets
from resel.envs.core import Environment
from resel.envs.gravity import GRAVITY_SEED, gravity_split
from resel.envs.key_to_door import KeyToDoor
from resel.envs.locomotion import DEFAULT_BACKEND
from resel.envs.registry import register
from resel.envs.wind import Wind
from resel.envs.wrappers import EpisodesPerTask, ObservationMask


def _occluded(base: Callable[..., Environment], layout: dict[str, tuple[int, ...]], part: str):
    hidden = {"P": "velocities (positions only)", "V": "positions (velocities only)"}[part]

    def factory(**options):
        return ObservationMask(base(**options), layout[part], hidden=hidden)

    factory.__signature__ = inspect.signature(base)
    return factory


def _register_classic() -> None:
    for label, base in (("Pendulum", classic.pendulum), ("CartPole", classic.cartpole)):
        register(label, "classic", base)
        for part in ("P", "V"):
            factory = _occluded(base, classic.OBS_LAYOUTS[label], part)
            register(f"{label}-{part}", "classic", factory)
    register("MemoryChain", "credit_assignment", classic.memory_chain)


def _brax_full(robot: str):
    def factory(*, backend: str = DEFAULT_BACKEND, episode_length: int = 1000):
        return locomotion.BraxTask(robot, backend=backend, episode_length=episode_length)

    return factory


def _brax_occluded(robot: str, part: str):
    hidden = {"P": "velocities (positions only)", "V": "positions (velocities only)"}[part]

    def factory(*, backend: str = DEFAULT_BACKEND, episode_length: int = 1000):
        task = locomotion.BraxTask(robot, backend=backend, episode_length=episode_length)
        idx = task.position_indices if part == "P" else task.velocity_indices
        return ObservationMask(task, idx, hidden=hidden)

    return factory


def _brax_gravity(robot: str):
    def factory(
        *,
        split: str = "train",
        task_index: int | None = None,
        seed: int = GRAVITY_SEED,
        backend: str = DEFAULT_BACKEND,
        episode_length: int = 1000,
    ):
        """`split`: "train" (100 tasks), "test" (20 held out) or "all" of the 120 that `seed`
        draws (`resel.train.run` passes the run's seed); `task_index` fixes one."""
        scales = gravity_split(split, seed, robot)
        if task_index is not None:
            if not 0 <= task_index < len(scales):
                raise ValueError(
                    f"task_index {task_index} out of range for the {len(scales)} {split} gravities"
                )
            scales = scales[task_index : task_index + 1]
        return locomotion.GravityTask(
            robot, gravity_scales=scales, backend=backend, episode_length=episode_length
        )

    return factory


def _check_direction(direction):
    if direction is not None and direction not in (-1, 1):
        raise ValueError(f"direction must be +1, -1 or None (random per episode), got {direction}")


# The release's `max_rollouts_per_task` of AntDir, CheetahDir and HalfCheetahVel
# (envs/pomdp_config.py): two episodes of each task, the done flag in the observation.
EPISODES_PER_TASK = 2


def _episodes(task, episodes_per_task: int):
    if episodes_per_task < 1:
        raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
    return task if episodes_per_task == 1 else EpisodesPerTask(task, episodes_per_task)


def ant_dir(
    *,
    direction: int | None = None,
    backend: str = DEFAULT_BACKEND,
    episode_length: int = 200,
    episodes_per_task: int = EPISODES_PER_TASK,
):
    """Ant rewarded for running along the angle g = +1 or -1 rad (hidden), as the release's
    AntDir-v0; `direction` fixes g. `episodes_per_task` episodes of `episode_length` steps per
    task (`EpisodesPerTask`; 1: a plain episode per task)."""
    _check_direction(direction)
    task = locomotion.AngleDirectionTask(
        "Ant", forward_metric="forward_reward", backend=backend, episode_length=episode_length
    )
    return _episodes(_fix_direction(task, direction), episodes_per_task)


def cheetah_dir(
    *,
    direction: int | None = None,
    backend: str = DEFAULT_BACKEND,
    episode_length: int = 200,
    episodes_per_task: int = EPISODES_PER_TASK,
):
    """HalfCheetah rewarded `d * v_x - 0.05 |a|^2`, d = +-1 hidden; `direction` fixes it.
    `episodes_per_task` as for `ant_dir`."""
    _check_direction(direction)
    task = locomotion.DirectionTask(
        "HalfCheetah",
        forward_metric="reward_run",
        backend=backend,
        episode_length=episode_length,
        ctrl_cost_weight=0.05,
    )
    return _episodes(_fix_direction(task, direction), episodes_per_task)


def _fix_direction(task, direction):
    if direction is not None:
        task.default_directions = (float(direction),)
    return task


class _VelocitySetTask(locomotion.VelocityTask):
    """VelocityTask whose default params hold a fixed set of target velocities."""

    def __init__(self, velocities, **kwargs):
        super().__init__("HalfCheetah", **kwargs)
        self._velocities = velocities

    @property
    def default_params(self):
        return super().default_params.replace(velocities=jnp.asarray(self._velocities))


def cheetah_vel(
    *,
    target_velocity: float | None = None,
    split: str = "train",
    seed: int = task_sets.TASK_SEED,
    backend: str = DEFAULT_BACKEND,
    episode_length: int = 200,
    episodes_per_task: int = EPISODES_PER_TASK,
):
    """HalfCheetah rewarded `-|v_x - v*| - 0.05 |a|^2` for a hidden v*: one of 120 targets
    U[0, 3] drawn with `seed` (`split`: "train" 100, "test" 20 held out, "all" 120), or
    `target_velocity`. `episodes_per_task` as for `ant_dir`."""
    if target_velocity is not None:
        task = locomotion.VelocityTask(
            "HalfCheetah", backend=backend, episode_length=episode_length
        )
        task.default_range = (float(target_velocity), float(target_velocity))
    else:
        targets = task_sets.velocity_targets(split, seed)
        task = _VelocitySetTask(targets, backend=backend, episode_length=episode_length)
    return _episodes(task, episodes_per_task)


def _register_brax() -> None:
    for robot in locomotion.BRAX_IDS:
        register(robot, "locomotion", _brax_full(robot))
    for robot in locomotion.SPLIT_LAYOUT:
        for part in ("P", "V"):
            register(f"{robot}-{part}", "classic", _brax_occluded(robot, part))
    for robot in locomotion.BRAX_IDS:
        register(f"{robot}-Gravity", "gravity", _brax_gravity(robot))
    register("AntDir", "meta", ant_dir)
    register("CheetahDir", "meta", cheetah_dir)
    register("HalfCheetahVel", "meta", cheetah_vel)


KEY_TO_DOOR_LENGTHS = (60, 120, 250, 500)


def _key_to_door(apple_steps: int):
    def factory(
        *,
        room_size: int = 5,
        num_apples: int = 10,
        apple_reward: float = 1.0,
        final_reward: float = 5.0,
        door_steps: int = 10,
        apple_respawn: int = 20,
    ):
        return KeyToDoor(
            apple_steps=apple_steps,
            room_size=room_size,
            num_apples=num_apples,
            apple_reward=apple_reward,
            final_reward=final_reward,
            door_steps=door_steps,
            apple_respawn=apple_respawn,
        )

    return factory


def _register_grid_tasks() -> None:
    register("Wind", "meta", Wind)
    for n in KEY_TO_DOOR_LENGTHS:
        register(f"KeyToDoor-{n}", "credit_assignment", _key_to_door(n))


_register_classic()
_register_brax()
_register_grid_tasks()
