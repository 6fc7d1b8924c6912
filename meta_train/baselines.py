"""The toolkit's gridworld evaluation protocol, and the hand-tuned baselines it scores against.

Protocol (`EvalConfig`, one implementation used by `python -m meta_train evaluate`, `baselines` and
the a2c studies): fresh A2C agents with `num_envs` environments each, trained for `env_steps`
environment steps (or `num_updates` updates of 20 steps per env); every optimizer, hand-designed
or learned, gets the gradient clipped element-wise to [-1, 1] first (the authors' `grad_clip` =
optax.clip; the learned ones clip their input the same way) and the same per-task reward scale in
the A2C loss (returns are reported unscaled). The logged return is the authors': the mean return
of the episodes that finished inside a window of updates (`meta_train.a2c.window_returns`). The
score of a run is its final return, that mean over the last 10% of updates. Baselines: Adam and
RMSProp over the spec's learning-rate grid, the best lr per task by the mean score over seeds. One
compiled program per task runs the whole grid x seeds (the learning rate is traced and vmapped).

`python -m meta_train baselines --preset cpu --out runs/baselines` writes baselines.json and a
Markdown + CSV table (mean ± standard error over seeds per lr). `--optimizers adam --lrs 3e-3`
runs one cell of the grid, e.g. to set one configuration beside the authors' code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from meta_train import envs
from meta_train.a2c import A2CConfig, make_train_fn, window_returns
from meta_train.cli import baselines_parser
from optim4rl.container import atomic_write_bytes as atomic_write
from optim4rl.runtime.cli import error, interrupted
from optim4rl.runtime.errors import Interrupted, UsageError

LR_GRID = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop}
CURVE_POINTS = 50  # windows of the stored learning curves
# The authors' released evaluation (configs/a2c_grid.json, lopt_rl_*.json, a2c_catch.json): one
# agent with 512 envs for 3e7 steps on a gridworld, 64 envs for 5e5 steps on Catch.
RELEASE_ENV_STEPS = {**dict.fromkeys(envs.GRIDWORLD_TASKS, 30_000_000), "catch": 500_000}


@dataclass(frozen=True)
class EvalConfig:
    """How fresh agents are trained to score an optimizer (see the module docstring).

    env_steps: {task: environment steps per agent}; a task it omits runs `num_updates` updates.
    """

    tasks: tuple[str, ...] = envs.GRIDWORLD_TASKS
    seeds: int = 10
    num_updates: int = 5000
    num_envs: int = 1
    env_steps: dict[str, int] = field(default_factory=dict)
    final_fraction: float = 0.1
    grad_clip: float | None = 1.0
    conv_layout: str = "spatial"  # the big maps' network (A2CConfig.conv_layout)

    def __post_init__(self):
        for task in (*self.tasks, *self.env_steps):
            envs.check_task(task)
        bad = self.seeds < 1 or self.num_updates < 1 or self.num_envs < 1
        if bad or not 0 < self.final_fraction <= 1 or any(v < 1 for v in self.env_steps.values()):
            raise ValueError(f"bad EvalConfig {self}")

    def updates(self, task: str, rollout_len: int = 20) -> int:
        """A2C updates of one agent on `task`: env_steps / (rollout_len x num_envs), at least 1."""
        if task in self.env_steps:
            return max(self.env_steps[task] // (rollout_len * self.num_envs), 1)
        return self.num_updates

    def a2c(self, task: str, reward_scale: float = 1.0) -> A2CConfig:
        """The agent of this protocol on `task`."""
        return A2CConfig(
            task=task,
            num_envs=self.num_envs,
            num_updates=self.updates(task),
            reward_scale=reward_scale,
            grad_clip=self.grad_clip,
            conv_layout=self.conv_layout,
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "tasks": list(self.tasks), "env_steps": dict(self.env_steps)}


EVAL_PRESETS = {
    # the authors' release: 512 envs per agent, 3e7 env steps per gridworld (2,929 updates)
    "paper": EvalConfig(num_envs=512, env_steps=RELEASE_ENV_STEPS),
    # one env per agent for 5,000 updates (1e5 steps): this toolkit's earlier "paper" preset
    "single_env": EvalConfig(),
    # one env, 1,000 updates, 4 seeds, on the maps where tuned Adam separates from the random
    # policy at this size (the measurements: docs/meta_train.md, "Measurements behind defaults")
    "cpu": EvalConfig(tasks=("small_dense_short", "small_dense_long"), seeds=4, num_updates=1000),
    "smoke": EvalConfig(tasks=("small_dense_short",), seeds=2, num_updates=20),
    # the release's Catch evaluation (a2c_catch.json, lopt_rl_catch.json): 64 envs, 5e5 steps, no
    # gradient clip
    "catch": EvalConfig(
        tasks=("catch",), seeds=5, num_envs=64, env_steps={"catch": 500_000}, grad_clip=None
    ),
}


def _logged(runs: dict[str, np.ndarray], edges: np.ndarray) -> np.ndarray:
    total, count, last = (runs[k] for k in ("episode_return_sum", "episodes", "episode_return"))
    return window_returns(total, count, last, edges)


def final_return(runs: dict[str, np.ndarray], fraction: float) -> np.ndarray:
    """The authors' logged return over the last `fraction` of updates: (..., num_updates) metrics
    of `train_runs` -> (...)."""
    n = runs["episodes"].shape[-1]
    return _logged(runs, np.array([n - max(1, int(round(n * fraction))), n]))[..., 0]


def curve(runs: dict[str, np.ndarray], points: int = CURVE_POINTS) -> np.ndarray:
    """The logged return over `points` equal windows of updates: (..., num_updates) -> (..., W)."""
    n = runs["episodes"].shape[-1]
    return _logged(runs, np.unique(np.linspace(0, n, min(points, n) + 1).astype(int)))


def train_runs(
    task: str,
    make_optimizer: Callable[[Any], optax.GradientTransformation],
    grid: Any,
    ec: EvalConfig,
    reward_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Agents of protocol `ec` on `task` for every entry of `grid` (a pytree whose leaves have a
    leading axis G, given to `make_optimizer`) x `ec.seeds` seeds, in one compiled program.

    Seed i is jax.random.key(seed + i), as in `python -m eval run`'s a2c studies. Returns the
    per-update metrics needed for scoring, each (G, seeds, num_updates).
    """
    train = make_train_fn(ec.a2c(task, reward_scale), make_optimizer)
    run = jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0))
    keys = jax.vmap(jax.random.key)(jnp.arange(seed, seed + ec.seeds))  # as `eval run` seeds
    _, metrics = jax.jit(run)(keys, grid)
    return {k: np.asarray(metrics[k]) for k in ("episode_return_sum", "episodes", "episode_return")}


def sweep_curves(
    task: str, name: str, lrs, ec: EvalConfig, reward_scale: float = 1.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """`train_runs` of A2C with hand optimizer `name` over learning rates `lrs` (lr 0 leaves the
    network at its initialisation: the random policy)."""
    grid = jnp.asarray(lrs, jnp.float32)
    return train_runs(task, lambda lr: OPTIMIZERS[name](lr), grid, ec, reward_scale, seed)


def tune(
    ec: EvalConfig,
    lrs=LR_GRID,
    reward_scale: dict | None = None,
    progress: bool = True,
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS),
) -> dict:
    """{task: {optimizer: {"lr": best, "scores": {lr: mean}, "stderr": {lr: s.e.}, "finals":
    {lr: [per seed]}}}} over the grid; `reward_scale` {task: c} (default 1) as in `EvalConfig`'s
    protocol."""
    reward_scale = reward_scale or {}
    results: dict = {}
    jobs = [(t, n) for t in ec.tasks for n in optimizers]
    for task, name in tqdm(jobs, desc="baselines", disable=not progress):
        runs = sweep_curves(task, name, lrs, ec, float(reward_scale.get(task, 1.0)))
        finals = final_return(runs, ec.final_fraction)  # (lrs, seeds)
        scores = finals.mean(-1)
        stderr = finals.std(-1, ddof=1) / np.sqrt(finals.shape[-1]) if ec.seeds > 1 else 0 * scores
        best = int(np.argmax(scores))
        keys = [f"{lr:g}" for lr in lrs]
        results.setdefault(task, {})[name] = {
            "lr": float(lrs[best]),
            "scores": dict(zip(keys, scores.tolist(), strict=True)),
            "stderr": dict(zip(keys, stderr.tolist(), strict=True)),
            "finals": dict(zip(keys, finals.tolist(), strict=True)),
        }
    return results


def write_table(results: dict, out: Path, lrs=LR_GRID) -> None:
    head = ["task", "optimizer", *[f"{lr:g}" for lr in lrs], "best lr"]
    cell = lambda r, k: f"{r['scores'][k]:.3f} ± {r['stderr'][k]:.3f}"
    rows = [
        [task, name, *[cell(r, f"{lr:g}") for lr in lrs], f"{r['lr']:g}"]
        for task, per in results.items()
        for name, r in per.items()
    ]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    atomic_write(out / "baselines.md", ("\n".join(md) + "\n").encode())
    csv = [",".join(head)] + [",".join(row) for row in rows]
    atomic_write(out / "baselines.csv", ("\n".join(csv) + "\n").encode())


def _env_steps(text: str, tasks: tuple[str, ...]) -> dict[str, int]:
    parts = [int(float(x)) for x in text.split(",")]
    if len(parts) not in (1, 2):
        raise ValueError(f"--env-steps takes N or SMALL,BIG, got {text!r}")
    small, big = parts[0], parts[-1]
    return {t: big if t.startswith("big_") else small for t in tasks}


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The preset's EvalConfig with the options applied (ValueError if invalid)."""
    ec = EVAL_PRESETS[args.preset]
    if args.tasks:
        ec = replace(ec, tasks=tuple(t.strip() for t in args.tasks.split(",") if t))
    if args.seeds:
        ec = replace(ec, seeds=args.seeds)
    if args.num_envs:
        ec = replace(ec, num_envs=args.num_envs)
    if args.updates:
        ec = replace(ec, num_updates=args.updates, env_steps={})
    if getattr(args, "env_steps", None):
        ec = replace(ec, env_steps=_env_steps(args.env_steps, ec.tasks))
    if getattr(args, "conv_layout", None):
        ec = replace(ec, conv_layout=args.conv_layout)
    return ec


def main(argv: list[str]) -> int:
    args = baselines_parser().parse_args(argv)
    try:
        ec = eval_config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    lrs = tuple(args.lrs)
    try:
        results = tune(ec, lrs, optimizers=tuple(args.optimizers))
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    payload = {"eval_config": ec.to_json(), "lrs": list(lrs), "results": results}
    atomic_write(out / "baselines.json", json.dumps(payload, indent=2).encode())
    write_table(results, out, lrs)
    print((out / "baselines.md").read_text())
    return 0
