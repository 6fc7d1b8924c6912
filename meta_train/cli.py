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

# meta_train.config.PRESETS; the evaluation protocols (meta_train.protocol.EVAL_PRESETS) have the
# same names, and single_env, an evaluation protocol with no meta-training counterpart
TRAIN_PRESETS = ("paper", "cpu", "catch", "smoke")
EVAL_PRESETS = ("paper", "cpu", "catch", "smoke", "single_env")
KINDS = ("optim4rl", "lin", "l2lgd2")  # optim4rl.networks.KINDS
OPTIMIZERS = ("adam", "rmsprop")  # meta_train.protocol.OPTIMIZERS
LR_GRID = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)  # meta_train.protocol.LR_GRID
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
        help="evaluation seeds 0..N-1: the fresh agents per task and family that the results "
        "report (default: the preset's)",
    )
    parser.add_argument(
        "--tuning-seeds",
        type=positive_int,
        dest="tuning_seeds",
        help="tuning seeds 1000..1000+M-1, disjoint from the evaluation seeds: every candidate "
        "learning rate runs on them and the best mean score is chosen (default: the preset's)",
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def evaluate_parser() -> ArgumentParser:
    """`python -m meta_train evaluate`."""
    p = ArgumentParser(
        prog="python -m meta_train evaluate",
        description="Fresh A2C agents on each gridworld with a meta-trained optimizer, the same "
        "optimizer at its random initialisation, tuned Adam and the random policy: each family's "
        "lr chosen per task on the tuning seeds, results on the evaluation seeds.",
    )
    p.add_argument("checkpoint", help="meta_params.msgpack, a run folder, or a pretrained name")
    add_eval_options(p)
    p.add_argument(
        "--lr",
        type=positive_float,
        nargs="+",
        help="learning-rate candidates of every swept family (learned, learned_init, adam), "
        "chosen per task on the tuning seeds (default: the authors' grid 3e-2 ... 1e-4)",
    )
    p.add_argument(
        "--reward-scale",
        choices=("checkpoint", "none"),
        default="checkpoint",
        help="per-task reward scale in the A2C loss of the learned optimizer and its random "
        "initialisation: the one the checkpoint was meta-trained with (default), or none; Adam "
        "and the random policy are never scaled (the authors' baselines)",
    )
    p.add_argument(
        "--baselines",
        help="baselines.json from `python -m meta_train baselines`: Adam's lr per task as chosen "
        "there on its tuning seeds (1 candidate here)",
    )
    p.add_argument(
        "--adam-lr",
        type=positive_float,
        help="Adam's lr on every task (1 candidate; default: swept over --lr here)",
    )
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    return p


def baselines_parser() -> ArgumentParser:
    """`python -m meta_train baselines`."""
    p = ArgumentParser(
        prog="python -m meta_train baselines",
        description="A2C with Adam and RMSProp over the learning-rate grid, per gridworld, and the "
        "random policy: each optimizer's lr chosen per task on the tuning seeds (best mean "
        "score), results on the evaluation seeds.",
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
        "--lrs",
        type=positive_float,
        nargs="+",
        default=list(LR_GRID),
        help="learning-rate candidates of every optimizer (default: the authors' grid)",
    )
    p.add_argument("--out", default="runs/baselines", help="output folder")
    return p
