"""`python -m meta_train [train] ...`, `python -m meta_train evaluate CHECKPOINT ...`,
`python -m meta_train baselines ...` (one dispatch style for every package: optim4rl.runtime.cli)."""

from __future__ import annotations

import shlex
import sys

from meta_train.cli import train_parser
from optim4rl.runtime.cli import Command, dispatch, error, interrupted
from optim4rl.runtime.errors import Interrupted, UsageError


def parse_train(argv: list[str]):
    """(config, args) from the command line; every check happens here, before any compute."""
    args = train_parser().parse_args(argv)
    from meta_train.config import preset
    from meta_train.envs import check_task

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

    from optim4rl.runtime import distributed

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
        parser="meta_train.cli:evaluate_parser",
    ),
    "baselines": Command(
        "meta_train.baselines:main",
        "A2C with Adam and RMSProp over the learning-rate grid, per gridworld",
        parser="meta_train.cli:baselines_parser",
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
        state = train(
            config,
            args.out,
            resume=args.resume,
            preset=args.preset,
            progress=not args.no_progress,
            init_meta_params=init,
            command=shlex.join(["python", "-m", "meta_train", "train", *argv]),
        )
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    except (NonFiniteMetaGradient, FileExistsError, FileNotFoundError, ValueError) as err:
        # optim4rl.CheckpointError is a ValueError too
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(train_summary(args.out, int(state.nonfinite)))
    return 0


def train_summary(out: str, skipped: int) -> str:
    """The end of a meta-training run: the last tenth of its meta-steps per task (mean and
    standard deviation over those meta-steps), the files written and the next command."""
    import json
    from pathlib import Path

    import numpy as np

    text = (Path(out) / "metrics.jsonl").read_text()
    rows = [json.loads(s) for s in text.splitlines() if s.strip()]
    tail = rows[-max(len(rows) // 10, 1) :]
    lines = [f"meta-training: {len(rows)} meta-steps; {skipped} skipped "
             f"(non-finite meta-gradient); over the last {len(tail)} meta-steps:"]  # fmt: skip
    for task in tail[-1]["episode_return"]:
        ret = np.array([r["episode_return"][task] for r in tail])
        loss = np.array([r["task_meta_loss"][task] for r in tail])
        lines.append(f"  {task}: episode return {ret.mean():.4g} ± {ret.std():.2g} sd, "
                     f"meta-loss {loss.mean():.4g} ± {loss.std():.2g} sd")  # fmt: skip
    lines.append(f"wrote {out}/meta_params.msgpack (the result), {out}/checkpoint.msgpack, "
                 f"{out}/config.json, {out}/metrics.jsonl")  # fmt: skip
    lines.append(f"next: python -m meta_train evaluate {out}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
