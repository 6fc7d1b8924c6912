"""The options of `python -m meta_train train | evaluate | baselines`, in a module that imports no
JAX, so that `--help` and option errors answer at once.

The choices are named here, not imported from the modules that define them (which load JAX);
tests/test_cli.py checks that they are the same.
"""

from __future__ import annotations

import argparse

from optim4rl.runtime.cli import (
    ArgumentParser,
    add_distributed_arguments,
    non_negative_int,
    positive_float,
    positive_int,
)

# meta_train.config.PRESETS; the evaluation protocols (meta_train.baselines.EVAL_PRESETS) have the
# same names, and single_env, an evaluation protocol with no meta-training counterpart
TRAIN_PRESETS = ("paper", "cpu", "catch", "smoke")
EVAL_PRESETS = ("paper", "cpu", "catch", "smoke", "single_env")
KINDS = ("optim4rl", "lin", "l2lgd2")  # optim4rl.networks.KINDS
OPTIMIZERS = ("adam", "rmsprop")  # meta_train.baselines.OPTIMIZERS
LR_GRID = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # meta_train.baselines.LR_GRID
CONV_LAYOUTS = ("spatial", "release")  # meta_train.a2c.CONV_LAYOUTS


def train_parser() -> ArgumentParser:
    """`python -m meta_train train`. The numbers of the config (units, steps, learning rates, ...)
    are checked by `MetaTrainConfig`, one line each, before any compute; the seed here."""
    p = ArgumentParser(
        prog="python -m meta_train train",
        description="Pipeline meta-training of a learned optimizer.",
    )
    p.add_argument(
        "--preset", default="cpu", choices=TRAIN_PRESETS, help="meta-training settings and size"
    )
    p.add_argument("--out", default="runs/meta_train", help="run folder")
    p.add_argument(
        "--kind", choices=KINDS, help="learned optimizer (default: the preset's, optim4rl)"
    )
    p.add_argument("--tasks", help="comma-separated task names (default: the preset's)")
    p.add_argument(
        "--units",
        type=int,
        dest="units_per_task",
        help="training units (agents) per task (default: the preset's)",
    )
    p.add_argument(
        "--reset-interval",
        type=int,
        dest="reset_interval",
        help="m: meta-steps between two re-initialisations of a unit (its lifetime in the "
        "pipeline; default: the preset's)",
    )
    p.add_argument(
        "--meta-lr",
        type=float,
        dest="meta_lr",
        help="Adam learning rate of the meta-step (default: the preset's)",
    )
    p.add_argument(
        "--agent-lr",
        type=float,
        dest="agent_lr",
        help="learning rate of the learned optimizer on the agents (default: the preset's)",
    )
    p.add_argument(
        "--steps",
        type=int,
        dest="meta_steps",
        help="number of meta-steps (default: the preset's)",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        help="random seed of agents, environments and meta-params (default: the preset's)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        dest="checkpoint_every",
        help="meta-steps between checkpoints of the meta-parameters, 0: none (default: the "
        "preset's)",
    )
    p.add_argument(
        "--max-nonfinite",
        type=int,
        dest="max_nonfinite",
        help="consecutive non-finite meta-gradients (skipped) before the run stops, 0: never "
        "(default: the preset's)",
    )
    p.add_argument("--no-pipeline", action="store_true", help="ablation: all units the same age")
    p.add_argument(
        "--remat",
        choices=("auto", "on", "off"),
        default="auto",
        help="recompute inner updates in the backward pass (auto: only where storing their "
        "activations would take over a quarter of the device's memory)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--init", help="start from these meta-params (optim4rl checkpoint file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_distributed_arguments(p)
    return p


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    """The protocol options shared by `baselines` and `evaluate`."""
    parser.add_argument(
        "--preset",
        default="cpu",
        choices=EVAL_PRESETS,
        help="evaluation protocol and size (the meta-training presets' names; single_env: one "
        "env per agent for 5,000 updates)",
    )
    parser.add_argument("--tasks", help="comma-separated gridworld names (default: the preset's)")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        help="fresh agents (seeds) per task and method (default: the preset's)",
    )
    parser.add_argument(
        "--updates",
        type=positive_int,
        help="A2C updates per agent (replaces env steps; default: the preset's)",
    )
    parser.add_argument(
        "--num-envs", type=positive_int, help="environments per agent (default: the preset's)"
    )
    parser.add_argument(
        "--env-steps",
        help="env steps per agent: N for every task, or SMALL,BIG for the small and big maps "
        "(e.g. 3e6,1e6); replaces --updates",
    )
    parser.add_argument(
        "--conv-layout",
        choices=CONV_LAYOUTS,
        help="the big maps' conv: spatial (default: 2x2 over rows x cols) or release (the "
        "authors' release: over object channel x row, columns as features)",
    )


def evaluate_parser() -> ArgumentParser:
    """`python -m meta_train evaluate`."""
    p = ArgumentParser(
        prog="python -m meta_train evaluate",
        description="Fresh A2C agents on each gridworld with a meta-trained optimizer, the same "
        "optimizer at its random initialisation, and tuned Adam.",
    )
    p.add_argument("checkpoint", help="meta_params.msgpack, a run folder, or a pretrained name")
    add_eval_options(p)
    p.add_argument(
        "--lr",
        type=positive_float,
        nargs="+",
        help="learning rates of the learned optimizer, best per task is kept "
        "(default: the checkpoint's agent lr x 1/3, 1, 3)",
    )
    p.add_argument(
        "--reward-scale",
        choices=("checkpoint", "none"),
        default="checkpoint",
        help="per-task reward scale in the A2C loss of every method: the one the checkpoint was "
        "meta-trained with (default), or none",
    )
    p.add_argument("--baselines", help="baselines.json from `python -m meta_train baselines`")
    p.add_argument(
        "--adam-lr", type=positive_float, help="Adam lr on every task (default: tuned here)"
    )
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    return p


def baselines_parser() -> ArgumentParser:
    """`python -m meta_train baselines`."""
    p = ArgumentParser(
        prog="python -m meta_train baselines",
        description="A2C with Adam and RMSProp over the learning-rate grid, per gridworld; the "
        "best learning rate per task by the mean score over seeds.",
    )
    add_eval_options(p)
    p.add_argument(
        "--optimizers",
        nargs="+",
        default=list(OPTIMIZERS),
        choices=OPTIMIZERS,
        help="hand-designed optimizers to sweep",
    )
    p.add_argument(
        "--lrs", type=positive_float, nargs="+", default=list(LR_GRID), help="learning-rate grid"
    )
    p.add_argument("--out", default="runs/baselines", help="output folder")
    return p
