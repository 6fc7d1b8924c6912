"""`python -m resel [train] --env NAME --preset {paper,cpu} --steps N --seed S --out DIR [options]`,
`python -m resel envs` (the task names with their families).

Per-module optimizers: `--optim policy.context_encoder="adamw(learning_rate=1e-5)"`,
`--optim critic.default="optim4rl(learning_rate=1e-3, pretrained='gridworld')"`,
`--optim alpha="adam(learning_rate=1e-4)"`. The part after `policy.`/`critic.` is a pattern over
flax parameter paths (first match wins; new patterns go before the existing ones); `default` is
everything else. See docs/resel.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from typing import TYPE_CHECKING

from optim4rl.runtime.cli import (
    ArgumentParser,
    Command,
    add_distributed_arguments,
    dispatch,
    error,
    interrupted,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from optim4rl.runtime.errors import Interrupted, UsageError

if TYPE_CHECKING:
    from resel import config as cfg_mod

USAGE_EXAMPLE = (
    "python -m resel --env Pendulum-P --preset cpu --seed 0 1 2 --out runs/pend "
    '--optim policy.context_encoder="adamw(learning_rate=1e-5, weight_decay=0.0)"'
)
PRESETS = ("cpu", "paper")  # resel.config.PRESETS, named here so that --help loads no JAX


def parser() -> ArgumentParser:
    """The options of `python -m resel train` (imports no JAX)."""
    p = ArgumentParser(
        prog="python -m resel train", description="Train RESeL.", epilog=f"example: {USAGE_EXAMPLE}"
    )
    p.add_argument("--env", required=True, help="task name (`python -m resel envs` lists them)")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="cpu",
        help="the paper's settings for the task's suite, or the scaled-down cpu preset",
    )
    p.add_argument(
        "--steps", type=positive_int, help="total environment steps (default: the preset's)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, nargs="+", default=[0], help="one or more seeds (vmapped)"
    )
    p.add_argument("--out", help="run folder (config.json, metrics.jsonl, checkpoint.msgpack)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.msgpack")
    p.add_argument(
        "--encoder",
        choices=["mamba", "gru", "transformer", "none"],
        help="context encoder core (none: no context encoder; see docs/resel.md for its optimizer "
        "rule; default: the preset's)",
    )
    p.add_argument(
        "--scan",
        choices=["parallel", "sequential", "chunked"],
        help="Mamba scan (default: the preset's)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        help="transitions per gradient step (default: the preset's)",
    )
    p.add_argument(
        "--gamma", type=non_negative_float, help="discount factor (default: the preset's)"
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        help="uniform-random steps before learning (default: the preset's)",
    )
    p.add_argument(
        "--eval-every",
        type=positive_int,
        help="environment steps between evaluations (default: the preset's)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        help="environment steps between checkpoints (default: the preset's)",
    )
    p.add_argument(
        "--env-steps-per-update",
        type=positive_int,
        help="1: one update per env step (default: the preset's)",
    )
    p.add_argument(
        "--reward-input",
        choices=["yes", "no"],
        help="last reward as an input (default: the preset's)",
    )
    p.add_argument(
        "--lr-ce",
        type=non_negative_float,
        help="AdamW lr of both context encoders (default: the preset's)",
    )
    p.add_argument(
        "--lr-policy",
        type=non_negative_float,
        help="AdamW lr of the rest of the policy (default: the preset's)",
    )
    p.add_argument(
        "--lr-value",
        type=non_negative_float,
        help="AdamW lr of the rest of the critic (default: the preset's)",
    )
    p.add_argument(
        "--optim",
        action="append",
        default=[],
        metavar="NET.PATTERN=SPEC",
        help="optimizer spec for a module (repeatable); NET is policy, critic or alpha",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_distributed_arguments(p)  # seeds sharded over all processes' devices
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> cfg_mod.Config:
    """The preset for the task, then every option given on the command line."""
    import optim4rl
    from resel import config as cfg_mod

    c = cfg_mod.preset(args.preset, args.env)
    kw: dict = {}
    net_kw: dict = {}
    for name, field in [("steps", "total_steps"), ("batch_size", "batch_size"),
                        ("gamma", "gamma"), ("warmup", "warmup_steps"),
                        ("eval_every", "eval_every"),
                        ("checkpoint_every", "checkpoint_every"),
                        ("env_steps_per_update", "env_steps_per_update")]:  # fmt: skip
        if getattr(args, name) is not None:
            kw[field] = getattr(args, name)
    if args.reward_input:
        kw["use_reward"] = args.reward_input == "yes"
    if args.encoder:
        net_kw["encoder"] = args.encoder
    if args.scan:
        net_kw["scan_method"] = args.scan
    pol, cri, alpha = c.policy_optim, c.critic_optim, c.alpha_optim
    if args.lr_ce is not None:
        pol = optim4rl.assign(pol, "context_encoder", cfg_mod.adamw(args.lr_ce))
        cri = optim4rl.assign(cri, "context_encoder", cfg_mod.adamw(args.lr_ce))
    if args.lr_policy is not None:
        pol = optim4rl.assign(pol, "default", cfg_mod.adamw(args.lr_policy))
    if args.lr_value is not None:
        cri = optim4rl.assign(cri, "default", cfg_mod.adamw(args.lr_value))
    for item in args.optim:  # NET.PATTERN=SPEC -> optim4rl's canonical (pattern, spec) pairs
        net, dot, _ = item.partition("=")[0].partition(".")
        try:
            pattern, spec = optim4rl.parse_assignment(item[len(net) + len(dot) :] if dot else item)
        except optim4rl.SpecError as err:
            raise ValueError(f"--optim {item!r}: expected NET.PATTERN=SPEC") from err
        if net == "alpha" and not dot:
            alpha = spec
        elif net == "policy" and dot:
            pol = optim4rl.assign(pol, pattern, spec)
        elif net == "critic" and dot:
            cri = optim4rl.assign(cri, pattern, spec)
        else:
            raise ValueError(
                f"--optim {item!r}: the target must be policy.PATTERN, critic.PATTERN or alpha"
            )
    kw.update(policy_optim=pol, critic_optim=cri, alpha_optim=alpha)
    if net_kw:
        kw["net"] = dataclasses.replace(c.net, **net_kw)
    return dataclasses.replace(c, **kw)


def envs_main(argv: list[str]) -> int:
    ArgumentParser(
        prog="python -m resel envs", description="RESeL's task names, one per line with its family."
    ).parse_args(argv)
    from resel import envs

    for name in envs.names():
        print(f"  {name:<28}{envs.family_of(name)}")
    return 0


COMMANDS = {
    "train": Command("resel.__main__:train_main", "train RESeL on a task (the default command)"),
    "envs": Command("resel.__main__:envs_main", "the task names with their families"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(
        "python -m resel",
        "RESeL: recurrent off-policy RL with per-module optimizers.",
        COMMANDS,
        argv,
        default="train",
    )


def train_main(argv: list[str]) -> int:
    args = parse_args(argv)
    from optim4rl.runtime import distributed
    from resel import train
    from resel.envs.registry import canonical_name

    try:
        args.env = canonical_name(args.env)
        distributed.initialize_from_args(args)
        c = config_from_args(args)
        rows = train.run(
            c, args.env, args.seed, args.out, resume=args.resume,
            progress=not args.no_progress, command=shlex.join(["python", "-m", "resel", *argv]),
        )  # fmt: skip
        diverged: list[int] = []
    except train.TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        rows, diverged = err.rows, err.seeds
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(run_summary(rows, args.seed, diverged, args.out))
    return 3 if diverged else 0


def run_summary(rows: list[dict], seeds: list[int], diverged: list[int], out: str | None) -> str:
    """The end of a run in a few lines: each seed's last evaluation, the mean and spread over
    seeds, the files written and the next command."""
    from optim4rl.runtime.driver import summary

    last = {r["seed"]: r for r in rows if "eval_return" in r}
    lines = []
    for seed, r in sorted(last.items()):
        success = f" success {r['eval_success']:.2f}" if "eval_success" in r else ""
        lines.append(f"seed {seed}: step {r['step']} eval return {r['eval_return']:.1f}{success}")
    lines.append(summary(rows, "eval_return", seeds, diverged))
    if any("eval_success" in r for r in rows):
        lines.append(summary(rows, "eval_success", seeds, diverged))
    if out:
        lines.append(f"wrote {out}/config.json, {out}/metrics.jsonl, {out}/checkpoint.msgpack")
        lines.append(f"next: python -m resel.plot {out}   (learning curves: {out}/curves.png)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
