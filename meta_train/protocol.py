"""The toolkit's gridworld evaluation protocol: how fresh agents are trained and scored to compare
optimizer families (`python -m meta_train evaluate` and `baselines`; reports: meta_train.report).

Protocol (`EvalConfig`; one implementation, `compare_families`, used by `python -m meta_train
evaluate` and `baselines`): fresh A2C agents (`meta_train.a2c.make_agent`) with `num_envs`
environments each, trained for `env_steps` environment steps (or `num_updates` updates of 20 steps
per env) on the one run driver (`optim4rl.runtime.driver.run`, seeds vmapped, a diverged seed
frozen while the others finish, seed s drawn from jax.random.key(s)). Every optimizer gets the
gradient clipped element-wise to [-grad_clip, grad_clip] first (the authors' `grad_clip` =
optax.clip). Scores, as the authors score a run (their analysis_grid.py):

- the score of a run is the agent's metric "score" at its last evaluation: the mean of the last
  20 logged update returns (`meta_train.a2c.SCORE_POINTS`); a seed that diverged keeps its last
  finite score (`stats.hold`; with no finite evaluation at all, the random policy's mean score on
  the task), and every seed counts;
- learning curves: the logged return of each of `num_evals` windows of updates, held the same way.

Two stages, on disjoint seeds. Stage 1: every candidate (learning rate) of every swept family runs
on the tuning seeds (1000, 1001, ...) and `stats.select` picks each family's lr per task. Stage 2:
each family's chosen variant, and the unswept families (the random policy: the untrained network,
lr 0), run on the evaluation seeds (0, 1, ...); only stage 2 is reported as results. Claims and
normalised scores (random = 0, tuned Adam = 1) come from `stats.compare` alone.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optax
from tqdm.auto import tqdm

from meta_train import envs
from meta_train.a2c import SCORE_POINTS, A2CConfig, make_agent
from optim4rl.runtime import driver, stats
from optim4rl.runtime.numbers import seed_list

LR_GRID = (3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop}
CURVE_POINTS = 50  # evaluations (windows of updates) per run: the learning curves' points
TUNING_SEED_BASE = 1000  # tuning seeds are 1000, 1001, ...; evaluation seeds 0, 1, ...
FLOOR, REFERENCE = "random", "adam"  # the normalisation's 0 and 1
# The authors' released evaluation (configs/a2c_grid.json, lopt_rl_*.json, a2c_catch.json): one
# agent with 512 envs for 3e7 steps on a gridworld, 64 envs for 5e5 steps on Catch.
RELEASE_ENV_STEPS = {**dict.fromkeys(envs.GRIDWORLD_TASKS, 30_000_000), "catch": 500_000}
SCORE_RULE = (
    f"the agent's final score, the mean of the last {SCORE_POINTS} logged update returns (the "
    "authors' analysis_grid.py); a diverged seed keeps its last finite score (the random "
    "policy's mean where it has none) and counts"
)
SELECTION_RULE = (
    "per task and family, the learning rate with the highest mean score on the tuning seeds "
    "(optim4rl.runtime.stats.select); results on the evaluation seeds only"
)


@dataclass(frozen=True)
class EvalConfig:
    """How fresh agents are trained to score an optimizer (see the module docstring).

    seeds: evaluation seeds 0..seeds-1 (reported); tuning_seeds: 1000..1000+tuning_seeds-1 (the
    selection of learning rates only). env_steps: {task: environment steps per agent}; a task it
    omits runs `num_updates` updates.
    """

    tasks: tuple[str, ...] = envs.GRIDWORLD_TASKS
    seeds: int = 10
    tuning_seeds: int = 10
    num_updates: int = 5000
    num_envs: int = 1
    env_steps: dict[str, int] = field(default_factory=dict)
    grad_clip: float | None = 1.0
    conv_layout: str = "spatial"  # the big maps' network (A2CConfig.conv_layout)

    def __post_init__(self):
        for task in (*self.tasks, *self.env_steps):
            envs.check_task(task)
        bad = not 1 <= self.seeds <= TUNING_SEED_BASE or self.tuning_seeds < 1
        if bad or self.num_updates < 1 or self.num_envs < 1 or not self.tasks:
            raise ValueError(f"bad EvalConfig {self}")
        if any(v < 1 for v in self.env_steps.values()):
            raise ValueError(f"bad EvalConfig {self}: env_steps must be >= 1")

    @property
    def seed_ids(self) -> list[int]:
        """The evaluation seeds: 0 .. seeds - 1."""
        return list(range(self.seeds))

    @property
    def tuning_seed_ids(self) -> list[int]:
        """The tuning seeds: 1000 .. 1000 + tuning_seeds - 1 (disjoint from `seed_ids`)."""
        return list(range(TUNING_SEED_BASE, TUNING_SEED_BASE + self.tuning_seeds))

    def updates(self, task: str, rollout_len: int = 20) -> int:
        """A2C updates of one agent on `task`: env_steps / (rollout_len x num_envs), at least 1."""
        if task in self.env_steps:
            return max(self.env_steps[task] // (rollout_len * self.num_envs), 1)
        return self.num_updates

    def num_evals(self, task: str) -> int:
        """Evaluations (windows of updates) per run: CURVE_POINTS, or every update if fewer."""
        return min(CURVE_POINTS, self.updates(task))

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
        return {
            **self.__dict__,
            "tasks": list(self.tasks),
            "env_steps": dict(self.env_steps),
            "evaluation_seeds": self.seed_ids,
            "tuning_seed_ids": self.tuning_seed_ids,
        }


EVAL_PRESETS = {
    # the authors' release: 512 envs per agent, 3e7 env steps per gridworld (2,929 updates), and
    # their 10 seeds (here 10 to choose the lr and 10 others to report)
    "paper": EvalConfig(num_envs=512, env_steps=RELEASE_ENV_STEPS, seeds=10, tuning_seeds=10),
    # one env per agent for 5,000 updates (1e5 steps): this toolkit's earlier "paper" preset
    "single_env": EvalConfig(seeds=10, tuning_seeds=10),
    # one env, 1,000 updates, on the maps where tuned Adam separates from the random policy at
    # this size (the measurements: docs/meta_train.md, "Measurements behind defaults")
    "cpu": EvalConfig(
        tasks=("small_dense_short", "small_dense_long"), seeds=8, tuning_seeds=4, num_updates=1000
    ),
    "smoke": EvalConfig(tasks=("small_dense_short",), seeds=2, tuning_seeds=2, num_updates=20),
    # the release's Catch evaluation (a2c_catch.json, lopt_rl_catch.json): 64 envs, 5e5 steps, no
    # gradient clip
    "catch": EvalConfig(
        tasks=("catch",),
        seeds=10,
        tuning_seeds=5,
        num_envs=64,
        env_steps={"catch": 500_000},
        grad_clip=None,
    ),
}


@dataclass(frozen=True)
class Family:
    """One optimizer family of a comparison: `make(lr)` builds its optax transform at a learning
    rate, `lrs` its candidates (more than one: swept on the tuning seeds), `reward_scale` the
    factor of the rewards in its agents' A2C loss (returns are reported unscaled), `note` what the
    report says beside it (e.g. where its one candidate was chosen)."""

    make: Callable[[float], optax.GradientTransformation]
    lrs: tuple[float, ...]
    reward_scale: float = 1.0
    note: str = ""

    @property
    def swept(self) -> bool:
        return len(self.lrs) > 1


def random_family() -> Family:
    """The floor: the untrained network (optax.sgd at lr 0), unscaled."""
    return Family(optax.sgd, (0.0,), 1.0, "the untrained network (lr 0); not swept")


def hand_family(name: str, lrs: Sequence[float], note: str = "") -> Family:
    """Adam or RMSProp (OPTIMIZERS[name]) as the authors train them: no reward scale."""
    return Family(lambda lr: OPTIMIZERS[name](lr), _unique(lrs), 1.0, note)


def _unique(lrs: Sequence[float]) -> tuple[float, ...]:
    return tuple(dict.fromkeys(float(lr) for lr in lrs))


def held(rows: list[dict], seeds: Sequence[int], key: str, length: int, fill: float) -> np.ndarray:
    """[seeds, length]: each seed's values of row field `key` over its evaluations, up to its
    first non-finite one, the last held to the end (`stats.hold`; `fill` where there is none)."""
    per: dict[int, list] = {s: [] for s in seeds}
    for row in rows:
        per[row["seed"]].append(row.get(key))
    out = []
    for s in seeds:
        valid = []
        for v in per[s]:
            if v is None or not math.isfinite(v):
                break
            valid.append(v)
        out.append(stats.hold(valid, length, fill))
    return np.array(out, float).reshape(len(seeds), length)


def summarise(result: driver.Result, seeds: Sequence[int], length: int, fill: float) -> dict:
    """One run of several seeds: per-seed final scores (held), their mean, s.e., 95% t interval,
    the diverged seeds and the driver's messages, and the per-seed held return curves."""
    seeds = list(seeds)
    scores = held(result.rows, seeds, "score", length, fill)[:, -1]
    mean, se = stats.mean_se(scores)
    ci = stats.t_interval(scores)
    return {
        "seeds": seeds,
        "scores": scores.tolist(),
        "n": len(seeds),
        "mean": mean,
        "se": se,
        "ci95": [ci.low, ci.high],
        "diverged": [int(s) for s in result.diverged],
        "messages": list(result.messages),
        "curves": held(result.rows, seeds, "return", length, fill).tolist(),
    }


def build_agent(ec: EvalConfig, task: str, family: Family, lr: float):
    """The A2C agent (`make_agent`) of the protocol on `task` with `family` at `lr`."""
    config = ec.a2c(task, family.reward_scale)
    return make_agent(config, family.make(lr), ec.num_evals(task))


def _curve_steps(ec: EvalConfig, task: str) -> list[int]:
    """Environment steps at the end of each evaluation window (make_agent's windows)."""
    config = ec.a2c(task)
    edges = np.linspace(0, config.num_updates, ec.num_evals(task) + 1).astype(int)
    return (edges[1:] * config.rollout_len * config.num_envs).tolist()


def _task_runs(
    ec: EvalConfig, task: str, fams: dict[str, Family], bar, progress: bool
) -> dict[str, dict]:
    """Both stages on one task: {family: {"lr", "candidates", "reward_scale", "note", "tuning":
    {lr label: summary on the tuning seeds}, **summary on the evaluation seeds, "curve_steps"}}."""
    length = ec.num_evals(task)
    agents: dict[tuple[str, float], Any] = {}  # one build per variant: stage 2 reuses stage 1's

    def run(name: str, lr: float, seeds: list[int], fill: float, stage: str) -> dict:
        if (name, lr) not in agents:
            agents[name, lr] = build_agent(ec, task, fams[name], lr)
        desc = f"{task} {name} lr={lr:g} ({stage})"
        bar.set_postfix_str(desc)
        result = driver.run(agents[name, lr], seeds, progress=progress, desc=desc, leave=False)
        bar.update()
        out = summarise(result, seeds, length, fill)
        if stage == "tuning":
            del out["curves"]
        return out

    nan = float("nan")
    swept = [name for name, fam in fams.items() if fam.swept]
    tuning: dict[str, dict[str, dict]] = {name: {} for name in fams}
    fill = nan  # the random policy's mean score on these seeds, for a seed with no finite score
    if swept and FLOOR in fams:
        lr = fams[FLOOR].lrs[0]
        tuning[FLOOR][f"{lr:g}"] = run(FLOOR, lr, ec.tuning_seed_ids, nan, "tuning")
        fill = tuning[FLOOR][f"{lr:g}"]["mean"]
    chosen = {name: fam.lrs[0] for name, fam in fams.items()}
    for name in swept:
        for lr in fams[name].lrs:
            tuning[name][f"{lr:g}"] = run(name, lr, ec.tuning_seed_ids, fill, "tuning")
        pick = stats.select({k: np.asarray(v["scores"]) for k, v in tuning[name].items()})
        chosen[name] = fams[name].lrs[list(tuning[name]).index(pick)]
    out: dict[str, dict] = {}
    order = ([FLOOR] if FLOOR in fams else []) + [n for n in fams if n != FLOOR]
    fill = nan
    for name in order:
        fam = fams[name]
        out[name] = {
            "lr": chosen[name],
            "candidates": list(fam.lrs),
            "reward_scale": fam.reward_scale,
            "note": fam.note,
            "tuning": tuning[name],
            **run(name, chosen[name], ec.seed_ids, fill, "evaluation"),
            "curve_steps": _curve_steps(ec, task),
        }
        if name == FLOOR:
            fill = out[name]["mean"]
    return {name: out[name] for name in fams}  # the caller's order


def compare_families(
    ec: EvalConfig, families: dict[str, dict[str, Family]], progress: bool = True, label: str = ""
) -> dict:
    """Run the protocol for {task: {family: Family}} and compare on the evaluation seeds.

    Returns {"results": {task: {family: ...}} (`_task_runs`), "comparison": `comparison_json` of
    `stats.compare(scores, floor="random", reference="adam")`} where scores[task][family][seed]
    are the evaluation seeds' final scores (floor or reference left out where a family is absent).
    """
    runs = 0
    for fams in families.values():
        swept = sum(len(f.lrs) for f in fams.values() if f.swept)
        runs += swept + (1 if swept and FLOOR in fams else 0) + len(fams)
    bar = tqdm(total=runs, desc=label, unit="run", disable=not progress)
    try:
        results = {
            task: _task_runs(ec, task, fams, bar, progress) for task, fams in families.items()
        }
    finally:
        bar.close()
    scores = {
        task: {name: dict(zip(r["seeds"], r["scores"], strict=True)) for name, r in per.items()}
        for task, per in results.items()
    }
    has = lambda name: all(name in per for per in results.values())  # noqa: E731
    comparison = stats.compare(
        scores, floor=FLOOR if has(FLOOR) else None, reference=REFERENCE if has(REFERENCE) else None
    )
    return {"results": results, "comparison": comparison_json(comparison)}


def comparison_json(c: stats.Comparison) -> dict:
    """`stats.Comparison` as JSON: the claims, their level, winners and reasons, the normalised
    per-seed scores with their mean and 95% t interval per (task, family), the mean over every
    normalised task (per (task, seed)), and why a task is not normalised."""

    def interval(values: list[float]) -> dict:
        ci = stats.t_interval(np.asarray(values))
        return {"n": len(values), "mean": ci.estimate, "ci95": [ci.low, ci.high]}

    normalised = {
        task: {
            name: {
                "seeds": list(v),
                "scores": [float(x) for x in v.values()],
                **interval(list(v.values())),
            }
            for name, v in fams.items()
        }
        for task, fams in c.normalised.items()
    }
    pooled: dict[str, list[float]] = {}
    for fams in normalised.values():
        for name, v in fams.items():
            pooled.setdefault(name, []).extend(v["scores"])
    claims = [
        {
            "task": k.task,
            "a": k.a,
            "b": k.b,
            "difference": k.difference.estimate,
            "low": k.difference.low,
            "high": k.difference.high,
            "n": k.difference.n,
            "confidence": k.difference.confidence,
            "improvement": k.improvement,
            "verdict": k.verdict,
        }
        for k in c.claims
    ]
    return {
        "level": c.level,
        "claims": claims,
        "winners": c.winners,
        "reasons": c.reasons,
        "normalised": normalised,
        "normalised_all": {
            "tasks": list(normalised),
            **{name: interval(v) for name, v in pooled.items()},
        },
        "unused": c.unused,
    }


def protocol_lines(ec: EvalConfig) -> list[str]:
    """The report's header lines that describe the protocol and its seeds."""
    size = ", ".join(f"{t} {ec.updates(t):,} updates" for t in ec.tasks)
    clip = f"element-wise gradient clip {ec.grad_clip:g}" if ec.grad_clip else "no gradient clip"
    return [
        f"protocol: A2C, {ec.num_envs} env(s) per agent, {size}, {clip} before every optimizer, "
        f"{ec.conv_layout} conv on the big maps; the one run driver",
        f"evaluation seeds: {seed_list(ec.seed_ids)} (reported); tuning seeds: "
        f"{seed_list(ec.tuning_seed_ids)} (the selection only; disjoint)",
        f"selection: {SELECTION_RULE}",
        f"score: {SCORE_RULE}",
    ]


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
    if getattr(args, "tuning_seeds", None):
        ec = replace(ec, tuning_seeds=args.tuning_seeds)
    if args.num_envs:
        ec = replace(ec, num_envs=args.num_envs)
    if args.updates:
        ec = replace(ec, num_updates=args.updates, env_steps={})
    if getattr(args, "env_steps", None):
        ec = replace(ec, env_steps=_env_steps(args.env_steps, ec.tasks))
    if getattr(args, "conv_layout", None):
        ec = replace(ec, conv_layout=args.conv_layout)
    return ec
