"""Algorithm adapters for the study runner: `ppo` (eval.ppo), `a2c` (meta_train), `resel` (resel).

An adapter checks tasks and config before a study runs, and runs one cell (one task, one optimizer,
several seeds) through the one run driver (`optim4rl.runtime.driver`: seeds vmapped and sharded,
a diverged seed frozen while the others finish), calling `on_eval(seed_index, row)` after every
evaluation so the runner can write metrics as they come. A row is a dict with at least
"env_steps", "return" and "finite"; "success" (the evaluation episodes' success rate) where the
task reports one (RESeL on Key-to-Door). A diverged seed gets one last row with "finite": 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import optax

OnEval = Callable[[int, dict[str, float]], None]
# driver row fields a study row renames: env_steps, return, success (Key-to-Door's success rate)
RENAMED = ("step", "seed", "eval_return", "eval_success")


class Algorithm(Protocol):
    """`score_key` / `score_last`: a run's final score is the mean of its last `score_last`
    evaluations of the row field `score_key`, as the algorithm's authors score a run;
    `evaluates_untrained`: whether its first evaluation is of the untrained agent."""

    name: str
    score_key: str
    score_last: int
    evaluates_untrained: bool

    def check_task(self, task: str) -> None: ...

    def check_config(self, preset: str, overrides: dict[str, Any]) -> None: ...

    def build_optimizer(self, spec: Any) -> Any: ...

    def run_cell(
        self,
        *,
        task: str,
        preset: str,
        overrides: dict[str, Any],
        budget: int,
        num_evals: int | None,
        optimizer: Any,  # what build_optimizer returned
        seeds: Sequence[int],
        on_eval: OnEval,
        desc: str,
    ) -> None: ...


def _study_row(row: dict[str, Any]) -> dict[str, Any]:
    """A driver row ({"step", "seed", "eval_return", ...}) as a study row ({"env_steps",
    "return", "finite", ...}); the agent's own metrics ride along under their names (for
    `python -m eval analyze training-dynamics`), its timing does not (files that depend on the
    machine's load would differ between two runs of one study)."""
    out = {k: v for k, v in row.items() if k not in RENAMED and k != "sec_per_update"}
    out["env_steps"] = float(row["step"])
    if "error" in row:  # the driver froze this seed: its last row
        return {**out, "return": float("nan"), "finite": 0.0}
    out["return"] = float(row["eval_return"] if "eval_return" in row else row["return"])
    if "eval_success" in row:
        out["success"] = row["eval_success"]
    return {**out, "finite": 1.0}


def _drive(agent: Any, seeds: Sequence[int], on_eval: OnEval, desc: str) -> None:
    from optim4rl.runtime import driver

    rows = lambda i, r: on_eval(i, _study_row(r))  # noqa: E731
    driver.run(agent, seeds, progress=True, desc=desc, leave=False, on_row=rows)


class SpecOptimizer:
    """One optax transform for the whole agent, from anything optim4rl.from_spec accepts."""

    def build_optimizer(self, spec: Any) -> optax.GradientTransformation:
        import optim4rl

        return optim4rl.from_spec(spec)


class PPOAlgorithm(SpecOptimizer):
    """eval.ppo on Brax tasks; budget = environment steps; seeds vmapped. Parameter tree
    {"policy": ..., "value": ...}, so per-module specs may name "policy" and "value"."""

    name = "ppo"
    # the Optim4RL authors' Brax score (analysis_brax.py): the mean of the last 2 evaluations
    score_key, score_last, evaluates_untrained = "return", 2, True

    def check_task(self, task: str) -> None:
        from brax import envs

        if task not in envs._envs:  # noqa: SLF001 - brax keeps its registry private
            raise ValueError(
                f"unknown Brax env {task!r}; available: {', '.join(sorted(envs._envs))}"
            )  # noqa: SLF001

    def check_config(self, preset: str, overrides: dict[str, Any]) -> None:
        from eval.ppo import preset as ppo_preset

        ppo_preset(preset, **overrides)

    def config(self, task: str, preset: str, overrides: dict[str, Any], budget: int, num_evals):
        from eval.ppo import preset as ppo_preset

        extra = {"num_evals": num_evals} if num_evals else {}
        return ppo_preset(preset, **{**overrides, **extra, "env": task, "num_timesteps": budget})

    def run_cell(
        self, *, task, preset, overrides, budget, num_evals, optimizer, seeds, on_eval, desc
    ):
        from eval.ppo.train import make_agent

        config = self.config(task, preset, overrides, budget, num_evals)
        _drive(make_agent(config, optimizer), seeds, on_eval, desc)


class A2CAlgorithm(SpecOptimizer):
    """meta_train's A2C on the gridworlds and Catch; budget = environment steps (the study's
    preset names no other setting). Config keys are A2CConfig's; `reward_scale` may also be a
    table {task: scale} (1 for tasks it omits), and `grad_clip` clips every optimizer's gradient
    element-wise first, so a study applies the gridworld protocol (meta_train.protocol) to every
    method alike. A row's "return" is the authors' logged return of its window of updates."""

    name = "a2c"
    # the authors' gridworld and Catch score (analysis_grid.py): the mean of the last 20 logged
    # update returns, which the agent reports as "score" (meta_train.a2c.SCORE_POINTS)
    score_key, score_last, evaluates_untrained = "score", 1, False

    def check_task(self, task: str) -> None:
        from meta_train import envs

        envs.check_task(task)

    def check_config(self, preset: str, overrides: dict[str, Any]) -> None:
        from meta_train import a2c, envs

        fields = {f.name for f in dataclasses.fields(a2c.A2CConfig)} - {"task", "num_updates"}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown A2CConfig key(s) {unknown}; valid: {', '.join(sorted(fields))}"
            )
        scale = overrides.get("reward_scale", 1.0)
        if isinstance(scale, dict):
            bad = sorted(t for t in scale if t not in envs.TASKS)
            if bad:
                raise ValueError(f"reward_scale names unknown task(s) {bad}")

    def run_cell(
        self, *, task, preset, overrides, budget, num_evals, optimizer, seeds, on_eval, desc
    ):
        from meta_train import a2c

        overrides = dict(overrides)
        if isinstance(overrides.get("reward_scale"), dict):
            overrides["reward_scale"] = float(overrides["reward_scale"].get(task, 1.0))
        config = a2c.A2CConfig(task=task, **overrides)
        updates = max(budget // (config.rollout_len * config.num_envs), 1)
        config = dataclasses.replace(config, num_updates=updates)
        _drive(a2c.make_agent(config, optimizer, num_evals or 21), seeds, on_eval, desc)


def _pairs(spec: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A spec string or {pattern: spec} table as RESeL's ((pattern, spec), ...) ("default" last)."""
    if isinstance(spec, str):
        return (("default", spec),)
    if isinstance(spec, dict) and spec and all(isinstance(v, str) for v in spec.values()):
        if "default" not in spec:
            raise ValueError(f"{where}: a per-module table needs a 'default' entry")
        import optim4rl

        pairs = optim4rl.module_specs(spec)  # the canonical form; "default" last by convention
        return (*[(k, v) for k, v in pairs if k != "default"], ("default", spec["default"]))
    raise ValueError(f"{where}: expected a spec string or a table of spec strings, got {spec!r}")


class RESeLAlgorithm:
    """resel.train on resel.envs tasks; budget = environment steps (RESeL's total_steps).

    An optimizer spec is either one spec (string or {pattern: spec} table) used for both the
    policy and the critic, or a table {policy = ..., critic = ...} giving each its own.
    """

    name = "resel"
    # the mean of the last 3 evaluations (RESeL's authors average their last evaluations; their
    # analysis scripts are not released)
    score_key, score_last, evaluates_untrained = "return", 3, False

    def _modules(self):
        from resel import config, envs, train

        return config, envs, train

    def check_task(self, task: str) -> None:
        _, envs, _ = self._modules()
        if task not in envs.names():
            raise ValueError(f"unknown RESeL task {task!r}; available: {', '.join(envs.names())}")

    def check_config(self, preset: str, overrides: dict[str, Any]) -> None:
        config, _, _ = self._modules()
        config.preset(preset, "", **overrides)

    def build_optimizer(self, spec: Any) -> dict[str, tuple[tuple[str, str], ...]]:
        import optim4rl

        if isinstance(spec, dict) and set(spec) <= {"policy", "critic"} and spec:
            missing = {"policy", "critic"} - set(spec)
            if missing:
                raise ValueError(f"per-network spec table lacks {sorted(missing)}")
            parts = {k: _pairs(spec[k], k) for k in ("policy", "critic")}
        else:
            pairs = _pairs(spec, "spec")
            parts = {"policy": pairs, "critic": pairs}
        for pairs in parts.values():
            for _, text in pairs:
                optim4rl.from_spec(text)
        return {"policy_optim": parts["policy"], "critic_optim": parts["critic"]}

    def run_cell(
        self, *, task, preset, overrides, budget, num_evals, optimizer, seeds, on_eval, desc
    ):
        config, _, train = self._modules()
        extra = {}
        if (
            num_evals
        ):  # evaluate about num_evals - 1 times after warmup (a multiple of the update cycle)
            base = config.preset(preset, task, **overrides)
            cycle = base.policy_every * base.env_steps_per_update
            every = max((budget - base.warmup_steps) // max(num_evals - 1, 1) // cycle, 1) * cycle
            extra["eval_every"] = every
        cfg = config.preset(
            preset, task, **{**overrides, **extra, "total_steps": budget}, **optimizer
        )
        # the diverged seeds' last rows say so (TrainingDiverged); the others finished
        with contextlib.suppress(train.TrainingDiverged):
            train.run(cfg, task, list(seeds), None, on_row=lambda i, r: on_eval(i, _study_row(r)))


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (PPOAlgorithm(), A2CAlgorithm(), RESeLAlgorithm())
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
