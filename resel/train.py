"""Running RESeL: `make_agent` (RESeL under the one agent contract), `run(config, env_name,
seeds, out_dir)` (the one driver, `optim4rl.runtime.driver`, on it) and the cache of trainers.

Between chunks of `eval_every` steps the driver
- redoes a chunk whose batch came out short of `batch_size` transitions (many short episodes)
  with a grown batch layout (more trajectories, more rows; one recompile), the way the release
  adds rows to a batch as needed, so no update ever trains on a smaller batch (`make_agent`'s
  `regrow`);
- freezes a seed whose loss became non-finite at its state before the chunk while the others
  train on; `run` raises `TrainingDiverged` at the end, keeping every seed's rows.
Tasks with a held-out task set (the gravity suite) are evaluated on it. The seed axis is sharded
over all devices when they divide the seed count (`optim4rl.runtime.distributed`: also over
processes); metrics and checkpoints are gathered, and process 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim4rl.runtime import distributed, driver
from optim4rl.runtime.agent import Agent, KeySchedule
from optim4rl.runtime.folder import RunFolder
from resel import buffer as rb
from resel.algorithm import (  # noqa: F401  (re-exported: the public names of resel.train)
    MODULE_METRICS,
    Actor,
    AgentState,
    Trainer,
    TrainState,
    buffer_capacity,
    build_optimizer,
    grad_norms,
    make_train,
)
from resel.checkpoint import (  # noqa: F401
    CHECKPOINT,
    FORMAT_VERSION,
    load_checkpoint,
    read_header,
    save_checkpoint,
)
from resel.config import Config, from_dict


class TrainingDiverged(RuntimeError):
    """A loss became non-finite for some seeds; they were frozen, the others finished.

    `seeds` are the diverged seeds (`seed` the first of them); `rows` are the metric rows of every
    seed (a diverged seed's up to its last finite chunk), as `run` returns them.
    """

    def __init__(
        self,
        message: str,
        seed: int | None = None,
        rows: list[dict] | None = None,
        seeds: Sequence[int] | None = None,
    ):
        super().__init__(message)
        self.seeds = list(seeds) if seeds is not None else ([] if seed is None else [seed])
        self.seed = seed if seed is not None else (self.seeds[0] if self.seeds else None)
        self.rows = rows or []


def task_seed(env_name: str, seed: int) -> dict[str, int]:
    """`{"seed": seed}` where the task's factory draws its task set or split with a seed (gravity,
    HalfCheetahVel, Wind: the release splits by the run's seed), else `{}`."""
    from resel import envs

    return {"seed": seed} if env_name in envs.names() and envs.takes(env_name, "seed") else {}


def make_env(env_name: str, seed: int = 0):
    """A resel.envs task by name, its task split drawn with `seed` where it has one (the agent
    feeds the last reward itself, so no wrapper)."""
    from resel import envs

    return envs.make(env_name, **task_seed(env_name, seed))


def heldout_params(env_name: str, seed: int = 0) -> Any | None:
    """Params of the task's held-out task set (split by `seed`), None if it has none (or is not a
    resel.envs name)."""
    from resel import envs

    if env_name not in envs.names():
        return None
    return envs.heldout_params(env_name, task_seed(env_name, seed).get("seed"))


_TRAINERS: dict[tuple, Trainer] = {}


def _trainer(
    config: Config, env_name: str, env: Any, env_params: Any, eval_params: Any = None
) -> Trainer:
    """make_train, reusing the compiled functions of a (config, task) already built here."""
    # total_steps only sizes the default replay ring, so runs of any length can share a trainer
    key = (config if config.buffer_size is None else dataclasses.replace(config, total_steps=0),
           env_name)  # fmt: skip
    t = _TRAINERS.get(key)
    if t is None or t.env is not env or t.eval_params is not eval_params:
        _TRAINERS[key] = make_train(config, env, env_params, eval_params)
    return _TRAINERS[key]


def grown(config: Config, layout: rb.Layout, episode_len: int) -> Config | None:
    """`config` with a batch layout twice as large (trajectories and rows), up to one that holds
    any draw of `batch_size` transitions; None when the layout cannot grow any more."""
    m = min(2 * layout.max_trajs_per_batch, config.batch_size)
    if layout.packed:
        worst = rb.worst_case_rows(config.batch_size, episode_len, layout.k_zero, m, layout.row_len)
        rows = max(layout.rows, min(2 * layout.rows, worst))
    else:
        rows = m  # one trajectory per row
    if (m, rows) == (layout.max_trajs_per_batch, layout.rows):
        return None
    return dataclasses.replace(config, max_trajs_per_batch=m, batch_rows=rows)


_FNS: dict[int, tuple[Trainer, dict[str, Any]]] = {}


def _agent_fns(trainer: Trainer) -> dict[str, Any]:
    """The per-seed functions of `trainer` in the agent contract's form, built once per trainer
    (the driver compiles once per function object)."""
    if id(trainer) in _FNS:
        return _FNS[id(trainer)][1]
    p = trainer.pure

    def train_chunk(state: TrainState, key: jax.Array):
        del key  # RESeL's key stream lives in its state
        state, m = p["train_chunk"](state)
        m["train_return"] = m.pop("episode_return")  # NaN where no episode finished
        m["finite"] = jnp.isfinite(m["critic_loss"]).all() & jnp.isfinite(m["policy_loss"]).all()
        return state, m

    fns = {
        "init": p["init"],
        "warmup": p["warmup"],
        "train_chunk": train_chunk,
        "evaluate": p["evaluate"],
        "steps": lambda state: state.step,
    }
    _FNS[id(trainer)] = (trainer, fns)  # the trainer is kept, so its id stays its own
    return fns


def _keys(seeds: Sequence[int]) -> KeySchedule:
    """RESeL's keys: PRNGKey(seed) to start; evaluation episodes that depend on the step only
    (one key per step from the first seed, split over the seeds)."""
    base = jax.random.PRNGKey(10_000 + seeds[0])
    return KeySchedule(
        init=lambda s: jnp.stack([jax.random.PRNGKey(x) for x in s]),
        chunk=lambda s, c: jnp.zeros((len(s),), jnp.uint32),
        evaluate=lambda s, c, step: jax.random.split(jax.random.fold_in(base, step), len(s)),
    )


def make_agent(
    config: Config,
    env_name: str,
    env: Any,
    env_params: Any,
    eval_params: Any,
    seeds: Sequence[int],
) -> Agent:
    """RESeL under the one agent contract (`optim4rl.runtime.agent`): `config` with its batch
    layout as given; a chunk whose batch came out short makes `regrow` return the grown build."""
    trainer = _trainer(config, env_name, env, env_params, eval_params)
    fns = _agent_fns(trainer)
    ep_len = int(env.episode_length(env_params))
    c = config

    def regrow(m: dict[str, np.ndarray], alive: np.ndarray) -> Agent | None:
        if not np.any(m["batch_short"][alive] > 0):
            return None
        bigger = grown(c, trainer.layout, ep_len)
        return None if bigger is None else make_agent(bigger, env_name, env, env_params,
                                                      eval_params, seeds)  # fmt: skip

    def explain(m: dict[str, np.ndarray], i: int, step: int) -> str:
        bad = ~(np.isfinite(m["critic_loss"][i]) & np.isfinite(m["policy_loss"][i]))
        cycle = int(np.nonzero(bad)[0][0])
        at = step + (cycle + 1) * c.policy_every * c.env_steps_per_update
        which = "critic" if not np.isfinite(m["critic_loss"][i, cycle]) else "policy"
        return f"non-finite {which} loss at env step ~{at} (update {at - c.warmup_steps})"

    layout = {"max_trajs_per_batch": c.max_trajs_per_batch, "batch_rows": c.batch_rows,
              "buffer_size": buffer_capacity(c, ep_len)}  # fmt: skip
    return Agent(
        name="resel",
        init=fns["init"],
        train_chunk=fns["train_chunk"],
        steps=fns["steps"],
        total_steps=c.total_steps,
        evaluate=fns["evaluate"],
        warmup=fns["warmup"] if c.warmup_steps else None,
        keys=_keys(seeds),
        updates_per_chunk=trainer.chunk_updates,
        regrow=regrow,
        explain=explain,
        layout=layout,
    )


def run(
    config: Config,
    env_name: str,
    seeds: int | Sequence[int] = 0,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    env: tuple[Any, Any] | None = None,
    eval_params: Any | None = None,
    command: str | None = None,
    on_row: driver.OnRow | None = None,
) -> list[dict]:
    """Train `config` on `env_name` for every seed at once (vmapped); returns the metric rows.

    Rows: {"step", "seed", "eval_return", "train_return", losses, "alpha", grad norms per module,
    "sec_per_update"} after every evaluation, plus "eval_success" (the evaluation episodes' success
    rate) on tasks whose info has "success" (Key-to-Door). `eval_return` is measured on
    `eval_params`, by default the task's held-out set (`heldout_params`) when it has one. With
    `out_dir` (the driver's `RunFolder` rules): config.json, metrics.jsonl and checkpoint.msgpack
    (every checkpoint_every steps) there; a folder that holds a run needs `resume=True`, which
    continues from the checkpoint. A seed with a non-finite loss is frozen (its event goes to
    metrics.jsonl); if any seed diverged, `TrainingDiverged` is raised at the end.
    Ctrl-C raises `optim4rl.runtime.errors.Interrupted` (`command`: what resumes, for its message).
    `on_row(seed_index, row)` sees every row as it is written (a study's cell files).
    """
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    # the task split of the run's first seed: vmapped seeds share one environment
    env, env_params = env if env is not None else make_env(env_name, seeds[0])
    if eval_params is None:
        eval_params = heldout_params(env_name, seeds[0])
    folder = None
    if out_dir is not None:
        meta = {"env": env_name, "seeds": seeds, "config": config.to_dict(),
                "eval_tasks": "held-out" if eval_params is not None else "training"}  # fmt: skip
        folder = RunFolder(out_dir, meta, resume=resume, may_change={"config.total_steps"},
                           write=distributed.is_main(), command=command)  # fmt: skip
    # the shapes the saved run trained with (the batch layout its loop grew to, its replay ring),
    # kept out of the config, which stays as given, so that a resumed run matches them
    shapes = {}
    if folder is not None and resume:
        header = json.loads(read_header(folder.checkpoint))
        shapes = dict(header.get("layout", {}))
        if config.buffer_size is None and "buffer_size" not in shapes:  # older checkpoints
            ep_len = int(env.episode_length(env_params))
            shapes["buffer_size"] = buffer_capacity(from_dict(header["config"]), ep_len)
    agent = make_agent(dataclasses.replace(config, **shapes), env_name, env, env_params,
                       eval_params, seeds)  # fmt: skip

    def save(path, state, h):
        extra = {k: h[k] for k in ("layout", "diverged", "chunk")}
        save_checkpoint(path, state, config, seeds, extra)

    result = driver.run(
        agent,
        seeds,
        folder,
        checkpoint_every=config.checkpoint_every,
        checkpoint=(save, lambda path, tpl: load_checkpoint(path, tpl, config, seeds)),
        progress=progress,
        desc=f"RESeL {env_name} {config.net.encoder}",
        on_row=on_row,
    )
    if result.diverged:
        raise TrainingDiverged(" ".join(result.messages), rows=result.rows, seeds=result.diverged)
    return result.rows
