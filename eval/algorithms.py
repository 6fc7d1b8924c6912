"""Algorithm adapters for the study runner: `ppo` (eval.ppo), `a2c` (meta_train), `resel` (resel).

An adapter checks tasks and config before a study runs, and runs one cell (one task, one optimizer,
several seeds vmapped; `ppo` and `a2c` shard them over all devices, `optim4rl.distributed`), calling `on_eval(seed_index, row)` after every evaluation so the runner can
write metrics as they come. A row is a dict with at least "env_steps", "return" and "finite";
"success" (the evaluation episodes' success rate) where the task reports one (RESeL on
Key-to-Door).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from optim4rl import distributed

OnEval = Callable[[int, dict[str, float]], None]


class Algorithm(Protocol):
    name: str

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


class PackageNotReady(RuntimeError):
    """The package behind an algorithm does not expose what the adapter needs (yet)."""


def _rows(metrics: dict[str, Any], n: int) -> list[dict[str, float]]:
    """Split vmapped scalar metrics {name: [seeds]} into one row per seed (plain floats)."""
    host = {k: np.asarray(v) for k, v in distributed.gather(metrics).items()}
    return [{k: float(v[i]) for k, v in host.items()} for i in range(n)]


class SpecOptimizer:
    """One optax transform for the whole agent, from anything optim4rl.from_spec accepts."""

    def build_optimizer(self, spec: Any) -> optax.GradientTransformation:
        import optim4rl

        return optim4rl.from_spec(spec)


class PPOAlgorithm(SpecOptimizer):
    """eval.ppo on Brax tasks; budget = environment steps; seeds vmapped. Parameter tree
    {"policy": ..., "value": ...}, so per-module specs may name "policy" and "value"."""

    name = "ppo"

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
        from eval.ppo import make_ppo

        config = self.config(task, preset, overrides, budget, num_evals)
        ppo = make_ppo(config, optimizer)
        init = jax.jit(jax.vmap(ppo.init))
        epoch = jax.jit(jax.vmap(ppo.train_epoch))
        evaluate = jax.jit(jax.vmap(ppo.evaluate))
        split = jax.vmap(lambda k: jax.random.split(k, 3))
        # The same key derivation as eval.ppo.make_train, so a cell reproduces train(key).
        keys = distributed.shard_seeds(split(jax.vmap(jax.random.key)(np.asarray(seeds))))
        ts, env_state = init(keys[:, 0])
        epochs = max(config.num_evals - 1, 1)
        epoch_keys = jax.vmap(lambda k: jax.random.split(k, epochs))(keys[:, 2])
        n = len(seeds)
        returns = evaluate(ts, keys[:, 1])
        nan = np.full(n, np.nan)
        first = {
            "env_steps": ts.env_steps,
            "return": returns,
            "train_return": nan,
            "finite": np.ones(n),
        }
        for i, row in enumerate(_rows(first, n)):
            on_eval(i, row)
        finite = np.ones(n, bool)
        with tqdm(total=epochs, desc=desc, unit="eval", leave=False) as bar:
            for e in range(epochs):
                k = jax.vmap(jax.random.split)(epoch_keys[:, e])
                ts, env_state, metrics = epoch(ts, env_state, k[:, 0])
                finite &= distributed.gather(metrics.pop("finite"))
                metrics.update(
                    env_steps=ts.env_steps, **{"return": evaluate(ts, k[:, 1])}, finite=finite
                )
                rows = _rows(metrics, n)
                for i, row in enumerate(rows):
                    on_eval(i, row)
                bar.set_postfix(ret=f"{np.mean([r['return'] for r in rows]):.1f}")
                bar.update()


class A2CAlgorithm(SpecOptimizer):
    """meta_train's A2C on the gridworlds and Catch; budget = environment steps. Config keys are
    A2CConfig's; `reward_scale` may also be a table {task: scale} (1 for tasks it omits), and
    `grad_clip` clips every optimizer's gradient element-wise first, so a study applies the
    gridworld protocol (meta_train.baselines) to every method alike."""

    name = "a2c"
    presets: dict[str, dict[str, Any]] = {"paper": {}, "cpu": {}}  # scale = budget (steps)

    def _module(self):
        try:
            from meta_train import a2c, envs
        except ImportError as err:
            raise PackageNotReady(f"algorithm 'a2c' needs meta_train.a2c: {err}") from err
        return a2c, envs

    def check_task(self, task: str) -> None:
        _, envs = self._module()
        envs.check_task(task)

    def check_config(self, preset: str, overrides: dict[str, Any]) -> None:
        a2c, envs = self._module()
        if preset not in self.presets:
            raise ValueError(f"unknown a2c preset {preset!r}; available: {', '.join(self.presets)}")
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
        a2c, _ = self._module()
        overrides = dict(overrides)
        if isinstance(overrides.get("reward_scale"), dict):
            overrides["reward_scale"] = float(overrides["reward_scale"].get(task, 1.0))
        config = a2c.A2CConfig(task=task, **{**self.presets[preset], **overrides})
        steps_per_update = config.rollout_len * config.num_envs
        updates = max(budget // steps_per_update, 1)
        config = dataclasses.replace(config, num_updates=updates)
        train = jax.jit(jax.vmap(a2c.make_train(config, optimizer)))
        with tqdm(total=1, desc=desc, unit="cell", leave=False) as bar:
            keys = distributed.shard_seeds(jax.vmap(jax.random.key)(np.asarray(seeds)))
            _, metrics = train(keys)
            host = {k: np.asarray(v) for k, v in distributed.gather(metrics).items()}  # [seeds, T]
            bar.update()
        # finite so far: a window counts as finite only if every update up to its end was
        finite = np.logical_and.accumulate(
            host["finite"] & np.isfinite(host["episode_return_sum"]), axis=1
        )
        # Evaluations over num_evals equal windows of updates: the authors' logged return (mean
        # over the episodes that finished in the window) and, beside it, the mean over envs of
        # each env's last finished episode at the window's end.
        evals = min(num_evals or 21, updates)
        edges = np.linspace(0, updates, evals + 1).astype(int)
        returns = a2c.window_returns(
            host["episode_return_sum"], host["episodes"], host["episode_return"], edges
        )
        last = host["episode_return"][:, edges[1:] - 1]
        for s in range(len(seeds)):
            for j in range(evals):
                on_eval(
                    s,
                    {
                        "env_steps": float(edges[j + 1] * steps_per_update),
                        "return": float(returns[s, j]),
                        "last_episode_return": float(last[s, j]),
                        "episodes": float(host["episodes"][s, edges[j] : edges[j + 1]].sum()),
                        "finite": float(finite[s, edges[j + 1] - 1]),
                    },
                )


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


# become env_steps, return, success (Key-to-Door's success rate), ...
RESEL_RENAMED = ("step", "seed", "eval_return", "eval_success", "train_return")


class RESeLAlgorithm:
    """resel.train on resel.envs tasks; budget = environment steps (RESeL's total_steps).

    An optimizer spec is either one spec (string or {pattern: spec} table) used for both the
    policy and the critic, or a table {policy = ..., critic = ...} giving each its own.
    """

    name = "resel"

    def _modules(self):
        try:
            from resel import config, envs, train
        except ImportError as err:
            raise PackageNotReady(
                f"algorithm 'resel' needs resel.config/envs/train: {err}"
            ) from err
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
        if num_evals:  # evaluate about num_evals - 1 times after warmup (multiple of the unit)
            base = config.preset(preset, task, **overrides)
            unit = base.policy_every * base.env_steps_per_update
            every = max((budget - base.warmup_steps) // max(num_evals - 1, 1) // unit, 1) * unit
            extra["eval_every"] = every
        cfg = config.preset(
            preset, task, **{**overrides, **extra, "total_steps": budget}, **optimizer
        )
        index = {seed: i for i, seed in enumerate(seeds)}

        def emit(rows):
            for row in rows:
                # resel's own metrics (losses, alpha, per-module grad norms, ...) ride along
                # under their resel names, for `python -m eval analyze training-dynamics`
                extra = {k: v for k, v in row.items() if k not in RESEL_RENAMED}
                on_eval(
                    index[row["seed"]],
                    {
                        **extra,
                        "env_steps": float(row["step"]),
                        "return": float(row["eval_return"]),
                        "train_return": row.get("train_return"),
                        **({"success": row["eval_success"]} if "eval_success" in row else {}),
                        "finite": 1.0,
                    },
                )

        try:
            emit(train.run(cfg, task, list(seeds), None, progress=True))
        except train.TrainingDiverged as err:
            # every seed's evaluations are kept; the diverged seeds were frozen, the others
            # finished, so only the diverged ones get the non-finite marker
            emit(err.rows)
            for seed in err.seeds:
                row = {"env_steps": float("nan"), "return": float("nan"), "finite": 0.0}
                on_eval(index[seed], {**row, "error": str(err)})


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (PPOAlgorithm(), A2CAlgorithm(), RESeLAlgorithm())
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; available: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
