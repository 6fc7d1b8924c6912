"""Hand-tuned baselines: A2C with Adam and RMSProp over the spec's learning-rate grid, per task.

Each optimizer is `chain(clip_by_global_norm(1), adam(lr) | rmsprop(lr))`. One compiled program
per task runs the whole grid x seeds (the learning rate is traced and vmapped). The score of a run
is its final return: the mean episode return over the last 10% of updates. The best learning rate
is the one with the highest score averaged over seeds.

`python -m meta_train baselines --preset cpu --out runs/baselines` writes baselines.json and a
Markdown + CSV table.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from meta_train import envs
from meta_train.a2c import A2CConfig, make_train_fn
from meta_train.run import atomic_write

LR_GRID = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop}


@dataclass(frozen=True)
class EvalConfig:
    """How fresh agents are trained to score an optimizer (baselines and `evaluate`)."""

    tasks: tuple[str, ...] = envs.GRIDWORLD_TASKS
    seeds: int = 10
    num_updates: int = 5000
    final_fraction: float = 0.1

    def __post_init__(self):
        for task in self.tasks:
            envs.check_task(task)
        if self.seeds < 1 or self.num_updates < 1 or not 0 < self.final_fraction <= 1:
            raise ValueError(f"bad EvalConfig {self}")


EVAL_PRESETS = {
    "paper": EvalConfig(),
    "cpu": EvalConfig(seeds=4, num_updates=1000),
    "smoke": EvalConfig(tasks=("small_dense_short",), seeds=2, num_updates=20),
}


def final_return(curves: np.ndarray, fraction: float) -> np.ndarray:
    """Mean over the last `fraction` of updates of (..., num_updates) return curves."""
    n = max(1, int(round(curves.shape[-1] * fraction)))
    return curves[..., -n:].mean(-1)


def hand_optimizer(name: str, lr) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(1.0), OPTIMIZERS[name](lr))


def sweep_curves(task: str, name: str, lrs, ec: EvalConfig, seed: int = 0) -> np.ndarray:
    """(len(lrs), seeds, num_updates) episode-return curves of A2C with optimizer `name`."""
    config = A2CConfig(task=task, num_updates=ec.num_updates)
    train = make_train_fn(config, lambda lr: hand_optimizer(name, lr))
    run = jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0))
    keys = jax.random.split(jax.random.key(seed), ec.seeds)
    _, metrics = jax.jit(run)(keys, jnp.asarray(lrs, jnp.float32))
    return np.asarray(metrics["episode_return"])


def tune(ec: EvalConfig, lrs=LR_GRID, progress: bool = True) -> dict:
    """{task: {optimizer: {"lr": best, "scores": {lr: score}}}} over the grid."""
    results: dict = {}
    jobs = [(t, n) for t in ec.tasks for n in OPTIMIZERS]
    for task, name in tqdm(jobs, desc="baselines", disable=not progress):
        scores = final_return(sweep_curves(task, name, lrs, ec), ec.final_fraction).mean(-1)
        best = int(np.argmax(scores))
        results.setdefault(task, {})[name] = {
            "lr": float(lrs[best]),
            "scores": {f"{lr:g}": float(s) for lr, s in zip(lrs, scores, strict=True)},
        }
    return results


def write_table(results: dict, out: Path, lrs=LR_GRID) -> None:
    head = ["task", "optimizer", *[f"{lr:g}" for lr in lrs], "best lr"]
    rows = [
        [task, name, *[f"{r['scores'][f'{lr:g}']:.3f}" for lr in lrs], f"{r['lr']:g}"]
        for task, per in results.items()
        for name, r in per.items()
    ]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    atomic_write(out / "baselines.md", ("\n".join(md) + "\n").encode())
    csv = [",".join(head)] + [",".join(row) for row in rows]
    atomic_write(out / "baselines.csv", ("\n".join(csv) + "\n").encode())


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    """The evaluation-size options shared by `baselines` and `evaluate`."""
    parser.add_argument(
        "--preset", default="cpu", choices=list(EVAL_PRESETS), help="evaluation size (default cpu)"
    )
    parser.add_argument("--tasks", help="comma-separated gridworld names (default: the preset's)")
    parser.add_argument("--seeds", type=int, help="fresh agents (seeds) per task and method")
    parser.add_argument("--updates", type=int, help="agent updates per training run")


def eval_config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The preset's EvalConfig with --tasks/--seeds/--updates applied (ValueError if invalid)."""
    ec = EVAL_PRESETS[args.preset]
    if args.tasks:
        ec = replace(ec, tasks=tuple(t.strip() for t in args.tasks.split(",") if t))
    if args.seeds:
        ec = replace(ec, seeds=args.seeds)
    if args.updates:
        ec = replace(ec, num_updates=args.updates)
    return ec


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_train baselines")
    add_eval_options(p)
    p.add_argument("--out", default="runs/baselines", help="output folder (default runs/baselines)")
    args = p.parse_args(argv)
    try:
        ec = eval_config_from_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    results = tune(ec)
    payload = {"eval_config": {**ec.__dict__, "tasks": list(ec.tasks)}, "results": results}
    atomic_write(out / "baselines.json", json.dumps(payload, indent=2).encode())
    write_table(results, out)
    print((out / "baselines.md").read_text())
    return 0
