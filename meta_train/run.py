"""A meta-training run on disk: config.json, metrics.jsonl, atomic checkpoints, resume, NaN guard.

In a multi-process run (`optim4rl.runtime.distributed`) every process runs `train`; the units are
sharded over all processes' devices, process 0 alone writes the folder, and every process reads it to
resume (a shared filesystem), whatever the process count that wrote it.

Folder layout:
  config.json          the MetaTrainConfig of the run
  metrics.jsonl        one JSON line per meta-step (append-only; a resume drops lines past the
                       checkpoint so the file matches an uninterrupted run)
  checkpoint.msgpack   the whole MetaState (meta-params, Adam state, every unit) + a JSON header
  meta_params.msgpack  the result: the final meta-parameters in optim4rl's checkpoint format
                       (`optim4rl.load_meta_params`), written once the last meta-step is done
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

import optim4rl
from meta_train.checkpoint import checkpoint_step as _checkpoint_step
from meta_train.checkpoint import load_checkpoint, save_checkpoint
from meta_train.config import MetaTrainConfig
from meta_train.pipeline import MetaState, Pipeline, make_mesh, random_meta_params
from optim4rl.runtime import distributed
from optim4rl.runtime.errors import Interrupted
from optim4rl.runtime.folder import RunFolder

CHECKPOINT = "checkpoint.msgpack"
META_PARAMS = "meta_params.msgpack"


class NonFiniteMetaGradient(RuntimeError):
    """Raised when a run produced too many non-finite meta-gradients in a row."""


def git_commit() -> str:
    """The code version: the current git commit (with '+dirty' for local changes), or 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "meta_train", "optim4rl"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def init_key(seed: int) -> jax.Array:
    """The key `train` initialises a run of `seed` with (`Pipeline.init`)."""
    return jax.random.fold_in(jax.random.key(seed), 0)


def initial_meta_params(seed: int, kind: str) -> Any:
    """The random meta-parameters a run of `seed` starts from (`Pipeline.init` on `init_key`):
    what `meta_train evaluate` compares a run's result with as "its own random initialisation"."""
    return random_meta_params(init_key(seed), kind)


def save_meta_params(
    path: Path, state: MetaState, config: MetaTrainConfig, preset: str, random_init: bool
) -> None:
    optim4rl.save_meta_params(
        path,
        jax.device_get(state.meta_params),
        config.kind,
        hyperparameters={"grad_clip": config.grad_clip, "learning_rate": config.agent_lr},
        preset=preset,
        meta_steps=int(state.step),
        seed=config.seed,
        commit=git_commit(),
        tasks=list(config.tasks),
        units_per_task=config.units_per_task,
        reset_interval=config.reset_interval,
        pipeline=config.pipeline,
        meta_lr=config.meta_lr,
        reward_scale={t: config.scale_for(t) for t in config.tasks},
        skipped_nonfinite=int(state.nonfinite),
        random_init=random_init,  # False: started from given meta-parameters (--init)
    )


def train(
    config: MetaTrainConfig,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    preset: str = "custom",
    progress: bool = True,
    pipeline: Pipeline | None = None,
    stop_after: int | None = None,
    init_meta_params: Any = None,
    command: str | None = None,
) -> MetaState:
    """Run (or resume) meta-training in `out_dir`; returns the final MetaState.

    The run folder follows `optim4rl.runtime.folder.RunFolder`'s rules: a folder that holds a run
    needs `resume=True` (else `UsageError`), and a resume needs the same config.
    `init_meta_params` starts from given meta-parameters (e.g. a previous run's) instead of a
    random initialisation; units still start fresh.
    `stop_after` ends the loop after that many meta-steps of this call (as if killed; used by tests).
    meta_params.msgpack (the result) is written when the last meta-step is done; until then the
    checkpoint holds the meta-parameters. Ctrl-C raises `Interrupted` (`command` resumes).
    Raises NonFiniteMetaGradient after `config.max_nonfinite` non-finite meta-gradients in a row;
    the last checkpoint on disk is then the last good one.
    """
    out = Path(out_dir)
    main = distributed.is_main()
    folder = RunFolder(out, config.to_json(), resume=resume, write=main, command=command)
    ckpt = folder.checkpoint
    if pipeline is None:
        mesh = make_mesh() if len(jax.devices()) > 1 else None
        pipeline = Pipeline(config, mesh)
    distributed.barrier("meta_train.checked")  # nobody writes before every process checked

    state = pipeline.init(init_key(config.seed), init_meta_params)
    run_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    if resume:
        restored, _ = load_checkpoint(ckpt, distributed.host_zeros(state))
        state = pipeline.place(jax.tree_util.tree_map(jax.numpy.asarray, restored))
        folder.start(lambda r: r["step"] < int(restored.step))
    else:  # step 0: a good checkpoint exists from the start
        folder.start()
        _save(ckpt, state, config, main)

    start = int(state.step)
    end = config.meta_steps if stop_after is None else min(config.meta_steps, start + stop_after)
    in_a_row, t, saved_at = 0, start, start
    bar = tqdm(
        range(start, end), initial=start, total=config.meta_steps, disable=not (progress and main)
    )
    if start < end:
        bar.set_postfix_str("compiling (the first meta-step takes longest)")
    try:
        for t in bar:
            state, m = pipeline.step(state, run_key)
            m = jax.device_get(m)  # replicated: every process holds the whole value
            record = _record(t, m, config)
            folder.log(record)
            in_a_row = 0 if record["finite"] else in_a_row + 1
            if t == start:  # the ETA counts from here, not from the compilation
                bar.reset(total=config.meta_steps)
                bar.initial = bar.n = bar.last_print_n = start
            bar.set_postfix(
                meta_loss=f"{record['meta_loss']:.3g}",
                ret=f"{np.mean(list(record['episode_return'].values())):.3g}",
                skipped=int(state.nonfinite),
            )
            if config.max_nonfinite and in_a_row >= config.max_nonfinite:
                raise NonFiniteMetaGradient(
                    f"{in_a_row} non-finite meta-gradients in a row (meta-steps "
                    f"{t - in_a_row + 1}..{t}); stopping. The last good checkpoint is {ckpt} "
                    f"(meta-step {_checkpoint_step(ckpt)}). Try a lower meta_lr or agent_lr."
                )
            done = t + 1 == config.meta_steps
            every = config.checkpoint_every
            if record["finite"] and (done or (every and (t + 1) % every == 0)):
                host = _save(ckpt, state, config, main)
                saved_at = t + 1
                if main and done:
                    save_meta_params(
                        out / META_PARAMS, host, config, preset, init_meta_params is None
                    )
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(
            f"interrupted at meta-step {t:,} of {config.meta_steps:,}; the last checkpoint is at "
            f"meta-step {saved_at:,} ({ckpt}); resume with: {folder.resume_command()}"
        ) from None
    bar.close()
    return state


def _save(ckpt: Path, state: MetaState, config: MetaTrainConfig, main: bool) -> MetaState:
    """Gather the state to every host (a collective) and write it from process 0."""
    host = distributed.gather(state)
    if main:
        save_checkpoint(ckpt, host, config)
    return host


def _record(t: int, m: dict[str, Any], config: MetaTrainConfig) -> dict:
    per_task = lambda x: {task: float(v) for task, v in zip(config.tasks, x, strict=True)}  # noqa: E731
    return {
        "step": t,
        "meta_loss": float(np.mean(m["meta_loss"])),
        "task_meta_loss": per_task(m["meta_loss"]),
        "episode_return": per_task(m["episode_return"]),
        "task_grad_norm": per_task(m["task_grad_norm"]),
        "meta_grad_norm": float(m["meta_grad_norm"]),
        "finite": bool(m["finite"]),
    }
