"""Registry of the meta-training tasks: the six gridworlds of the Optim4RL paper and Catch."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from meta_train.catch import Catch
from meta_train.gridworld import GridWorld, gridworld_params


@dataclass(frozen=True)
class GridSpec:
    rows: int
    cols: int
    rewards: tuple[float, ...]
    respawn_prob: float
    horizon: int


_SMALL = (1.0, -1.0)
_BIG = (1.0, 1.0, -1.0, -1.0)
GRIDWORLDS: dict[str, GridSpec] = {
    "small_dense_short": GridSpec(6, 8, _SMALL, 0.5, 50),
    "small_dense_long": GridSpec(8, 6, _SMALL, 0.5, 500),
    "big_sparse_short": GridSpec(12, 14, _BIG, 0.05, 50),
    "big_sparse_long": GridSpec(14, 12, _BIG, 0.05, 500),
    "big_dense_short": GridSpec(11, 15, _BIG, 0.5, 50),
    "big_dense_long": GridSpec(15, 11, _BIG, 0.5, 500),
}
GRIDWORLD_TASKS: tuple[str, ...] = tuple(GRIDWORLDS)
TASKS: tuple[str, ...] = (*GRIDWORLD_TASKS, "catch")
NEGATIVE_TERMINATE_PROB = 0.5  # -1 objects end the episode with this probability, +1 objects never


def check_task(name: str) -> str:
    """Return `name` if it is a known task, else raise a ValueError that lists them."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(f"unknown task {name!r}{hint}; known tasks: {', '.join(TASKS)}")
    return name


def make(name: str):
    """`(env, env_params)` for a task name, gymnax style."""
    check_task(name)
    if name == "catch":
        env = Catch()
        return env, env.default_params
    spec = GRIDWORLDS[name]
    env = GridWorld(spec.rows, spec.cols, len(spec.rewards), name=name)
    term = tuple(NEGATIVE_TERMINATE_PROB if r < 0 else 0.0 for r in spec.rewards)
    return env, gridworld_params(env, spec.rewards, term, spec.respawn_prob, spec.horizon)


def uses_conv(name: str) -> bool:
    """The spec's agent: conv torso on the big maps, MLP on the small ones and Catch."""
    return check_task(name).startswith("big_")


def hidden_units(name: str) -> int:
    """The authors' torso width: Dense256 on Catch, Dense32 on the gridworlds."""
    return 256 if check_task(name) == "catch" else 32
