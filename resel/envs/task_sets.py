"""Fixed task sets of the meta-RL suites, with the release's sizes and train / held-out splits.

Each set is drawn once with numpy from a fixed seed (so it does not depend on the JAX version);
the first `num_train` tasks are for training and the rest are held out for evaluation. Sizes from
the release's pomdp_config.py: HalfCheetahVel 120 (100 + 20), Wind 60 (40 + 20); the gravity
suite's 120 (100 + 20) is in `resel.envs.gravity`.
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


def winds(split: str = "train", seed: int = TASK_SEED) -> np.ndarray:
    """Wind's hidden winds w ~ U(-0.08, 0.08)^2: float32 [40, 2] / [20, 2] / [60, 2]."""
    w = np.random.default_rng(seed).uniform(-0.08, 0.08, size=(WIND_TASKS, 2)).astype(np.float32)
    return split_tasks(w, WIND_TRAIN, split)
