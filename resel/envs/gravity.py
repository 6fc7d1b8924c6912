"""The fixed gravity task set of the dynamics-randomized suite.

Gravity is Brax's default gravity times `1.5**u`, `u ~ U(-3, 3)`: 60 scales drawn once from a fixed
seed (numpy PCG64, so the set does not depend on the JAX version); the first 40 are the training
tasks, the last 20 are held out for evaluation.
"""

from __future__ import annotations

import numpy as np

GRAVITY_SEED = 0
NUM_TASKS = 60
NUM_TRAIN = 40
SPLITS = ("train", "test", "all")


def gravity_scales(seed: int = GRAVITY_SEED, num_tasks: int = NUM_TASKS) -> np.ndarray:
    """All `num_tasks` gravity multipliers `1.5**u`, `u ~ U(-3, 3)`: float32 [num_tasks]."""
    u = np.random.default_rng(seed).uniform(-3.0, 3.0, size=num_tasks)
    return (1.5**u).astype(np.float32)


def gravity_split(split: str = "train", seed: int = GRAVITY_SEED) -> np.ndarray:
    """The training (first 40), held-out (last 20) or all 60 multipliers."""
    if split not in SPLITS:
        raise ValueError(f"unknown gravity split {split!r}; choose one of {SPLITS}")
    scales = gravity_scales(seed)
    return {"train": scales[:NUM_TRAIN], "test": scales[NUM_TRAIN:], "all": scales}[split]
