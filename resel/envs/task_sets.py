"""Task sets of the meta-RL suites, with the release's sizes and train / held-out splits.

As in the release (envs/make_pomdp_env.py), the run's seed splits the set: HalfCheetahVel's 120
targets (and the gravity suite's 120 multipliers, `resel.envs.gravity`) are drawn with it, Wind's
60 winds are the release's fixed set (numpy RandomState(1337)) in an order the seed permutes; the
first `num_train` tasks are for training and the rest are held out for evaluation. numpy draws, so
a set does not depend on the JAX version. Sizes from the release's pomdp_config.py:
HalfCheetahVel 120 (100 + 20), Wind 60 (40 + 20), gravity 120 (100 + 20).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "test", "all")
TASK_SEED = 0
VELOCITY_TASKS, VELOCITY_TRAIN = 120, 100
WIND_TASKS, WIND_TRAIN = 60, 40


def split_tasks(tasks: np.ndarray, num_train: int, split: str) -> np.ndarray:
    """The training (first num_train), held-out (the rest) or all tasks."""
    if split not in SPLITS:
        raise ValueError(f"unknown task split {split!r}; choose one of {SPLITS}")
    return {"train": tasks[:num_train], "test": tasks[num_train:], "all": tasks}[split]


def velocity_targets(split: str = "train", seed: int = TASK_SEED) -> np.ndarray:
    """HalfCheetahVel's target velocities v* ~ U[0, 3]: float32 [100] / [20] / [120]."""
    v = np.random.default_rng(seed).uniform(0.0, 3.0, size=VELOCITY_TASKS).astype(np.float32)
    return split_tasks(v, VELOCITY_TRAIN, split)


WIND_SET_SEED = 1337  # the release's wind.py: np.random.RandomState(seed=1337), whatever the run


def winds(split: str = "train", seed: int = TASK_SEED) -> np.ndarray:
    """Wind's hidden winds w ~ U(-0.08, 0.08)^2, the release's 60, permuted by `seed`:
    float32 [40, 2] / [20, 2] / [60, 2]."""
    rs = np.random.RandomState(WIND_SET_SEED)
    w = np.array([[rs.uniform(-0.08, 0.08), rs.uniform(-0.08, 0.08)] for _ in range(WIND_TASKS)])
    w = w[np.random.default_rng(seed).permutation(WIND_TASKS)].astype(np.float32)
    return split_tasks(w, WIND_TRAIN, split)
