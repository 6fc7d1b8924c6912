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
import sys

import optim4rl
from optim4rl import distributed
from optim4rl.cli import Command, dispatch
from resel import config as cfg_mod

USAGE_EXAMPLE = (
    "python -m resel --env Pendulum-P --preset cpu --seed 0 1 2 --out runs/pend "
    '--optim policy.context_encoder="adamw(learning_rate=1e-5, weight_decay=0.0)"'
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m resel train", description="Train RESeL.", epilog=f"example: {USAGE_EXAMPLE}"
    )
    p.add_argument("--env", required=True, help="task name (`python -m resel envs` lists them)")
    p.add_argument(
        "--preset",
        choices=sorted(cfg_mod.PRESETS),
        default="cpu",
        help="the paper's settings for the task's suite, or the scaled-down cpu preset (default)",
    )
    p.add_argument("--steps", type=int, help="total environment steps")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="one or more seeds (vmapped)")
    p.add_argument("--out", help="run folder (config.json, metrics.jsonl, checkpoint.msgpack)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.msgpack")
    p.add_argument(
        "--encoder",
        choices=["mamba", "gru", "transformer", "none"],
        help="context encoder core (none: no context encoder; see docs/resel.md for its optimizer rule)",
    )
    p.add_argument("--scan", choices=["parallel", "sequential", "chunked"], help="Mamba scan")
    p.add_argument("--batch-size", type=int, help="transitions per gradient step")
    p.add_argument("--gamma", type=float, help="discount factor")
    p.add_argument("--warmup", type=int, help="uniform-random steps before learning")
    p.add_argument("--eval-every", type=int, help="environment steps between evaluations")
    p.add_argument("--env-steps-per-update", type=int, help="1: one update per env step")
    p.add_argument("--reward-input", choices=["yes", "no"], help="last reward as an input")
    p.add_argument("--lr-ce", type=float, help="AdamW lr of both context encoders")
    p.add_argument("--lr-policy", type=float, help="AdamW lr of the rest of the policy")
    p.add_argument("--lr-value", type=float, help="AdamW lr of the rest of the critic")
    p.add_argument(
        "--optim",
        action="append",
        default=[],
        metavar="NET.PATTERN=SPEC",
        help="optimizer spec for a module (repeatable); NET is policy, critic or alpha",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    distributed.add_arguments(p)  # seeds sharded over all processes' devices
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> cfg_mod.Config:
    """The preset for the task, then every option given on the command line."""
    c = cfg_mod.preset(args.preset, args.env)
    kw: dict = {}
    net_kw: dict = {}
    for name, field in [("steps", "total_steps"), ("batch_size", "batch_size"),
                        ("gamma", "gamma"), ("warmup", "warmup_steps"),
                        ("eval_every", "eval_every"),
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
    argparse.ArgumentParser(
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
    from resel import train

    try:
        distributed.initialize_from_args(args)
        c = config_from_args(args)
        rows = train.run(
            c, args.env, args.seed, args.out, resume=args.resume, progress=not args.no_progress
        )
    except train.TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    last = {}
    for r in rows:
        last[r["seed"]] = r
    for seed, r in sorted(last.items()):
        success = f" success {r['eval_success']:.2f}" if "eval_success" in r else ""
        print(f"seed {seed}: step {r['step']} eval return {r['eval_return']:.1f}{success}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
