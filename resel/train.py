"""Running RESeL: `run(config, env_name, seeds, out_dir)` and the cache of built trainers.

`run` drives the jitted, seed-vmapped functions of `resel.algorithm.make_train` with a progress
bar, writes config.json, metrics.jsonl (`resel.metrics_log`) and atomic checkpoints
(`resel.checkpoint`), and resumes. Two things happen between chunks of `eval_every` steps:
- a batch that came out short of `batch_size` transitions (many short episodes) makes the loop
  grow the batch layout (more trajectories, more rows; one recompile) and redo the chunk, the way
  the release adds rows to a batch as needed, so no update ever trains on a smaller batch;
- a seed whose loss became non-finite is frozen at its state before the chunk and the others
  train on; `TrainingDiverged` is raised at the end, keeping every seed's rows.
Tasks with a held-out task set (the gravity suite) are evaluated on it. The seed axis is sharded
over all devices when they divide the seed count (`optim4rl.distributed`: also over processes);
metrics and checkpoints are gathered, and process 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim4rl import distributed
from optim4rl.checkpoint import atomic_write_bytes
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
from resel.metrics_log import MetricsLog, _finite_or_none, _json_value


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


def _where_seeds(keep: np.ndarray, new: Any, old: Any) -> Any:
    """Per seed (leading axis): `new` where keep, else `old`."""
    k = jnp.asarray(keep)
    return jax.tree.map(
        lambda a, b: jnp.where(k.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old
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
) -> list[dict]:
    """Train `config` on `env_name` for every seed at once (vmapped); returns the metric rows.

    Rows: {"step", "seed", "eval_return", "train_return", losses, "alpha", grad norms per module,
    "sec_per_update"} after every evaluation, plus "eval_success" (the evaluation episodes' success
    rate) on tasks whose info has "success" (Key-to-Door). `eval_return` is measured on
    `eval_params`, by default the task's held-out set (`heldout_params`) when it has one. With
    `out_dir`:
    config.json, metrics.jsonl and checkpoint.msgpack (every checkpoint_every steps) there;
    `resume=True` continues from the checkpoint. A seed with a non-finite loss is frozen (its
    event goes to metrics.jsonl); if any seed diverged, `TrainingDiverged` is raised at the end.
    """
    from tqdm.auto import tqdm

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    # the task split of the run's first seed: vmapped seeds share one environment
    env, env_params = env if env is not None else make_env(env_name, seeds[0])
    if eval_params is None:
        eval_params = heldout_params(env_name, seeds[0])
    ep_len = int(env.episode_length(env_params))
    c = config
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT if out else None
    header: dict = {}
    if resume:
        if ckpt is None or not ckpt.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        header = json.loads(read_header(ckpt))
    # the shapes the saved run trained with (the batch layout its loop grew to, its replay ring),
    # kept out of the config, which stays as given, so that a resumed run matches them
    shapes = dict(header.get("layout", {}))
    if resume and c.buffer_size is None and "buffer_size" not in shapes:  # older checkpoints
        shapes["buffer_size"] = buffer_capacity(from_dict(header["config"]), ep_len)
    run_c = dataclasses.replace(c, **shapes)
    trainer = _trainer(run_c, env_name, env, env_params, eval_params)
    state = trainer.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    start_step = 0
    if resume:
        state, header = load_checkpoint(ckpt, state, c, seeds)
        start_step = header["step"]
    state = distributed.shard_seeds(state)  # over all devices (and processes) if they divide
    write = out is not None and distributed.is_main()  # several processes: process 0 writes
    alive = np.array([s not in header.get("diverged", []) for s in seeds])
    if write:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"env": env_name, "seeds": seeds, "config": c.to_dict(),
                "eval_tasks": "held-out" if eval_params is not None else "training"}  # fmt: skip
        atomic_write_bytes(out / "config.json", json.dumps(meta, indent=1).encode())
        log = MetricsLog(out / "metrics.jsonl", start_step if resume else None)
    rows: list[dict] = list(log.rows) if write else []
    messages: list[str] = []
    eval_base = jax.random.PRNGKey(10_000 + seeds[0])  # eval episodes depend on the step only
    bar = tqdm(
        total=c.total_steps, initial=start_step, disable=not progress, unit="step",
        desc=f"RESeL {env_name} {c.net.encoder}",
    )  # fmt: skip
    if start_step == 0 and c.warmup_steps:
        state = trainer.warmup(state)
        bar.update(c.warmup_steps)

    def save():
        layout = {"max_trajs_per_batch": run_c.max_trajs_per_batch, "batch_rows": run_c.batch_rows,
                  "buffer_size": buffer_capacity(run_c, ep_len)}  # fmt: skip
        diverged = [s for s, a in zip(seeds, alive, strict=True) if not a]
        host = distributed.gather(state)  # every process takes part
        if write:
            save_checkpoint(ckpt, host, c, seeds, {"layout": layout, "diverged": diverged})

    step = int(np.max(distributed.gather(state.step)))
    last_ckpt = step if resume else -1
    while step < c.total_steps and alive.any():
        t0 = time.perf_counter()
        while True:  # redo the chunk with a larger layout while a batch came out short
            new_state, m = trainer.train_chunk(state)
            m = distributed.gather(m)
            if not np.any(m["batch_short"][alive] > 0):
                break
            bigger = grown(run_c, trainer.layout, ep_len)
            if bigger is None:
                break
            run_c = bigger
            trainer = _trainer(run_c, env_name, env, env_params, eval_params)
        dt = time.perf_counter() - t0
        bad = ~(np.isfinite(m["critic_loss"]) & np.isfinite(m["policy_loss"]))  # (seeds, units)
        for i in np.nonzero(alive & bad.any(axis=1))[0]:
            unit_i = int(np.nonzero(bad[i])[0][0])
            at = step + (unit_i + 1) * c.policy_every * c.env_steps_per_update
            which = "critic" if not np.isfinite(m["critic_loss"][i, unit_i]) else "policy"
            msg = (
                f"non-finite {which} loss at env step ~{at} (update {at - c.warmup_steps}) for "
                f"seed {seeds[i]}; the seed was frozen at step {step}, the others went on."
            )
            messages.append(msg)
            alive[i] = False
            if write:
                log.write({"step": at, "seed": seeds[i], "event": "diverged", "message": msg})
        state = _where_seeds(alive, new_state, state)
        if not alive.any():
            break
        step = int(np.max(distributed.gather(state.step)))
        k = jax.random.fold_in(eval_base, step)
        ev = distributed.gather(trainer.evaluate(state, jax.random.split(k, len(seeds))))
        returns, success = ev["return"], ev["success"]
        for i, seed in enumerate(seeds):
            if not alive[i]:
                continue
            row = {"step": step, "seed": seed, "eval_return": float(returns[i])}
            if np.isfinite(success[i]):  # tasks with info["success"] (Key-to-Door)
                row["eval_success"] = float(success[i])
            ep = m["episode_return"][i]
            ep = ep[np.isfinite(ep)]
            row["train_return"] = _finite_or_none(float(ep.mean())) if ep.size else None
            for k_, v in m.items():
                if k_ != "episode_return":
                    row[k_] = _json_value(np.mean(v[i]))
            row["sec_per_update"] = dt / trainer.chunk_updates
            rows.append(row)
            if write:
                log.write(row)
        bar.update(step - bar.n)
        succ = success[alive]
        bar.set_postfix(
            eval=f"{returns[alive].mean():.1f}",
            **({"success": f"{succ.mean():.2f}"} if np.isfinite(succ).all() else {}),
            q_loss=f"{np.mean(m['critic_loss'][alive]):.3g}",
            alpha=f"{np.mean(m['alpha'][alive]):.3g}",
        )
        if out and (step - max(last_ckpt, 0) >= c.checkpoint_every or step >= c.total_steps):
            save()
            last_ckpt = step
    bar.close()
    if messages:
        if out and last_ckpt < step:
            save()
        dead = [s for s, a in zip(seeds, alive, strict=True) if not a]
        raise TrainingDiverged(" ".join(messages), rows=rows, seeds=dead)
    return rows
