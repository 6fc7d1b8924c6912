"""The gravity task set of the dynamics-randomized suite.

Gravity is Brax's default gravity times `1.5**u`, `u ~ U(-L, L)` with L = 3 (L = 2 for Humanoid,
the release's `log_scale_limit`): 120 scales drawn with a seed, the run's seed as in the release
(numpy PCG64, so the set does not depend on the JAX version); the first 100 are the
training tasks, the last 20 are held out for evaluation. These are the release's counts
(pomdp_config.py: num_tasks 120, num_train_tasks 100, num_eval_tasks 20 for every DM_*_gravity
task); the paper's text says 60 = 40 + 20. We follow the release, the code behind the reported
numbers; `gravity_scales(num_tasks=60)[:40]` / `[40:]` gives the paper's split.
"""

from __future__ import annotations

import numpy as np

from resel.envs.task_sets import split_tasks

GRAVITY_SEED = 0
NUM_TASKS = 120
NUM_TRAIN = 100
LOG_SCALE_LIMIT = {"Humanoid": 2.0}  # envs/meta/__init__.py of the release; 3.0 otherwise


def gravity_scales(
    seed: int = GRAVITY_SEED, num_tasks: int = NUM_TASKS, log_limit: float = 3.0
) -> np.ndarray:
    """All `num_tasks` gravity multipliers `1.5**u`, `u ~ U(-L, L)`: float32 [num_tasks]."""
    u = np.random.default_rng(seed).uniform(-log_limit, log_limit, size=num_tasks)
    return (1.5**u).astype(np.float32)


def gravity_split(split: str = "train", seed: int = GRAVITY_SEED, robot: str = "") -> np.ndarray:
    """The training (first 100), held-out (last 20) or all 120 multipliers of `robot`'s range."""
    scales = gravity_scales(seed, log_limit=LOG_SCALE_LIMIT.get(robot, 3.0))
    return split_tasks(scales, NUM_TRAIN, split)
