"""`python -m meta_train [train] ...`, `python -m meta_train evaluate CHECKPOINT ...`,
`python -m meta_train baselines ...` (one dispatch style for every package: optim4rl.cli)."""

from __future__ import annotations

import argparse
import sys

from meta_train.config import PRESETS, preset
from meta_train.envs import check_task
from optim4rl import KINDS, distributed
from optim4rl.cli import Command, dispatch


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m meta_train train",
        description="Pipeline meta-training of a learned optimizer.",
    )
    p.add_argument(
        "--preset", default="cpu", choices=list(PRESETS), help="paper or cpu scale (default cpu)"
    )
    p.add_argument("--out", default="runs/meta_train", help="run folder")
    p.add_argument("--kind", choices=list(KINDS), help="learned optimizer (default optim4rl)")
    p.add_argument("--tasks", help="comma-separated task names (default: the preset's)")
    p.add_argument(
        "--units", type=int, dest="units_per_task", help="training units (agents) per task"
    )
    p.add_argument(
        "--reset-interval",
        type=int,
        dest="reset_interval",
        help="m: meta-steps between two re-initialisations of a unit (its lifetime in the pipeline)",
    )
    p.add_argument(
        "--meta-lr", type=float, dest="meta_lr", help="Adam learning rate of the meta-step"
    )
    p.add_argument(
        "--agent-lr",
        type=float,
        dest="agent_lr",
        help="learning rate of the learned optimizer on the agents",
    )
    p.add_argument("--steps", type=int, dest="meta_steps", help="number of meta-steps")
    p.add_argument("--seed", type=int, help="random seed of agents, environments and meta-params")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        dest="checkpoint_every",
        help="meta-steps between checkpoints of the meta-parameters",
    )
    p.add_argument(
        "--max-nonfinite",
        type=int,
        dest="max_nonfinite",
        help="consecutive non-finite meta-gradients (skipped) before the run stops",
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
    distributed.add_arguments(p)
    return p


def parse_train(argv: list[str]):
    """(config, args) from the command line; every check happens here, before any compute."""
    args = _train_parser().parse_args(argv)
    overrides = {
        k: getattr(args, k)
        for k in (
            "kind",
            "units_per_task",
            "reset_interval",
            "meta_lr",
            "agent_lr",
            "meta_steps",
            "seed",
            "checkpoint_every",
            "max_nonfinite",
        )
        if getattr(args, k) is not None
    }
    if args.tasks is not None:
        overrides["tasks"] = tuple(check_task(t.strip()) for t in args.tasks.split(",") if t)
    if args.no_pipeline:
        overrides["pipeline"] = False
    if args.remat != "auto":
        overrides["remat"] = args.remat == "on"
    config = preset(args.preset, **overrides)

    import jax  # after the cheap checks

    distributed.initialize_from_args(args)  # several processes: jax.devices() lists them all
    n_dev = len(jax.devices())
    if config.units_per_task % n_dev:
        raise ValueError(
            f"units per task ({config.units_per_task}) must be divisible by the number of "
            f"devices ({n_dev}) so that units can be sharded"
        )
    return config, args


COMMANDS = {
    "train": Command(
        "meta_train.__main__:train_main", "pipeline meta-training (the default command)"
    ),
    "evaluate": Command(
        "meta_train.evaluate:main",
        "fresh A2C agents on each gridworld with a meta-trained optimizer",
    ),
    "baselines": Command(
        "meta_train.baselines:main",
        "A2C with Adam and RMSProp over the learning-rate grid, per gridworld",
    ),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(
        "python -m meta_train",
        "Meta-training of learned optimizers on gridworlds.",
        COMMANDS,
        argv,
        default="train",
    )


def train_main(argv: list[str]) -> int:
    try:
        config, args = parse_train(argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from meta_train.run import NonFiniteMetaGradient, train

    try:
        init = None
        if args.init:
            import optim4rl

            init, _ = optim4rl.load_meta_params(args.init, config.kind)
        train(
            config,
            args.out,
            resume=args.resume,
            preset=args.preset,
            progress=not args.no_progress,
            init_meta_params=init,
        )
    except (NonFiniteMetaGradient, FileExistsError, FileNotFoundError, ValueError) as err:
        # optim4rl.CheckpointError is a ValueError too
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: {args.out}/meta_params.msgpack")
    return 0


if __name__ == "__main__":
    sys.exit(main())
