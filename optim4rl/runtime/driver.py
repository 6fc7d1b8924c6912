"""The one run driver: any `Agent` (optim4rl.runtime.agent), several seeds at once.

- seeds vmapped on a device and sharded over devices and processes (`distributed.shard_seeds`);
- a seed whose chunk was not finite is frozen at its state before the chunk, the others finish;
- a progress bar that says when it is compiling and whose ETA starts after the first chunk;
- an optional run folder (`RunFolder`): config.json, append-only metrics.jsonl, a checkpoint
  every `checkpoint_every` steps (and at the end), resume that continues bit-identically;
- Ctrl-C becomes `Interrupted`, one line with the step reached, the last checkpoint and the
  command that resumes.

One metrics row per seed per evaluation point: {"step", "seed", "eval_<k>" for each finite result
of `evaluate`, every chunk metric reduced to one number (NaN-ignoring mean; None if none),
"sec_per_update" where the agent counts updates}.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optim4rl import container
from optim4rl.runtime import distributed
from optim4rl.runtime.agent import Agent
from optim4rl.runtime.errors import Interrupted
from optim4rl.runtime.folder import RunFolder

OnRow = Callable[[int, dict[str, Any]], None]
Save = Callable[[Any, Any, dict[str, Any]], None]  # (path, host state, header)
Load = Callable[[Any, Any], tuple[Any, dict[str, Any]]]  # (path, template) -> (state, header)


class Result(NamedTuple):
    """What a run gives back: its rows (every seed; a diverged seed's up to its last finite
    chunk), the final state (seed axis first), the diverged seeds and their messages."""

    rows: list[dict]
    state: Any
    diverged: list[int]
    messages: list[str]
    agent: Agent  # the build it ended with (RESeL's batch layout may have grown)


def default_checkpoint(agent: Agent) -> tuple[Save, Load]:
    """Save/load through the container, as format "<agent.name>.run_state" version 1."""
    fmt = f"{agent.name}.run_state"

    def save(path, state, header):
        container.save(path, fmt, 1, header, state)

    def load(path, template):
        return container.load(path, fmt, 1, template)

    return save, load


def _where_seeds(keep: np.ndarray, new: Any, old: Any) -> Any:
    k = jnp.asarray(keep)
    return jax.tree.map(
        lambda a, b: jnp.where(k.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old
    )


def _number(v: np.ndarray) -> float | None:
    """NaN-ignoring mean of one seed's metric (None when nothing is finite)."""
    v = np.asarray(v, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


class _Compiled(NamedTuple):
    """The jitted, seed-vmapped functions of one agent build."""

    init: Any
    warmup: Any
    train_chunk: Any
    steps: Any
    evaluate: Any


_COMPILED: dict[tuple[int, ...], tuple[Agent, _Compiled]] = {}


def _compiled(agent: Agent) -> _Compiled:
    """The jitted vmapped functions of `agent`, shared by every run of the same function objects
    (so a sweep of runs over one build compiles once)."""
    fns = (agent.init, agent.warmup, agent.train_chunk, agent.steps, agent.evaluate)
    key = tuple(map(id, fns))
    if key not in _COMPILED:  # the agent is kept with it, so the ids stay its functions'
        jv = lambda f: jax.jit(jax.vmap(f)) if f is not None else None  # noqa: E731
        _COMPILED[key] = (agent, _Compiled(*map(jv, fns)))
    return _COMPILED[key][1]


def run(
    agent: Agent,
    seeds: Sequence[int],
    folder: RunFolder | None = None,
    *,
    checkpoint_every: int | None = None,
    checkpoint: tuple[Save, Load] | None = None,
    progress: bool = True,
    desc: str = "",
    leave: bool = True,
    on_row: OnRow | None = None,
) -> Result:
    """Train `agent` for every seed at once until `agent.total_steps`; see the module docstring.

    `checkpoint`: the (save, load) pair (default: `default_checkpoint`); the header carries
    "seeds", "step", "diverged" and "layout" (`agent.layout`), so a resumed run rebuilds the same
    shapes. `on_row(seed_index, row)` is called for every row (a study writes its files with it).
    `leave=False` clears the progress bar when the run ends (a study's cells).
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    n = len(seeds)
    save_fn, load_fn = checkpoint or default_checkpoint(agent)
    fns = _compiled(agent)
    state = fns.init(agent.keys.init(seeds))
    header: dict[str, Any] = {}
    if folder is not None and folder.resume:
        state, header = load_fn(folder.checkpoint, distributed.host_zeros(state))
        if list(header.get("seeds", seeds)) != seeds:
            raise container.CheckpointError(
                f"{folder.checkpoint} holds seeds {header['seeds']}, not {seeds}"
            )
        state = jax.tree.map(jnp.asarray, state)
    state = distributed.shard_seeds(state)
    alive = np.array([s not in header.get("diverged", []) for s in seeds])
    chunk = int(header.get("chunk", 0))
    step = int(np.max(distributed.gather(fns.steps(state))))
    last_ckpt = step if header else None
    rows = folder.start(lambda r: r.get("step", 0) <= step) if folder else []
    messages: list[str] = []

    def emit(i: int, row: dict) -> None:
        rows.append(row)
        if folder is not None:
            folder.log(row)
        if on_row is not None:
            on_row(i, row)

    def save() -> None:
        host = distributed.gather(state)  # every process takes part
        if folder is not None and folder.write:
            diverged = [s for s, a in zip(seeds, alive, strict=True) if not a]
            meta = {"seeds": seeds, "step": step, "chunk": chunk, "diverged": diverged,
                    "layout": agent.layout, "config": folder.config}  # fmt: skip
            save_fn(folder.checkpoint, host, meta)

    def evaluate(results_of_chunk: dict | None, dt: float | None) -> None:
        ev = {}
        if fns.evaluate is not None:
            keys = agent.keys.evaluate(seeds, chunk, step)
            ev = distributed.gather(fns.evaluate(state, keys))
        steps_now = distributed.gather(fns.steps(state))
        for i, seed in enumerate(seeds):
            if not alive[i]:
                continue
            row: dict[str, Any] = {"step": int(steps_now[i]), "seed": seed}
            for k, v in ev.items():
                if np.isfinite(v[i]):  # NaN: the task has no such result (success)
                    row[f"eval_{k}"] = float(v[i])
            for k, v in (results_of_chunk or {}).items():
                if k != "finite":
                    row[k] = _number(v[i])
            if dt is not None and agent.updates_per_chunk:
                row["sec_per_update"] = dt / agent.updates_per_chunk
            emit(i, row)

    bar = tqdm(
        total=agent.total_steps, initial=step, disable=not progress, unit="step", desc=desc,
        leave=leave,
    )  # fmt: skip
    try:
        if step == 0 and agent.warmup is not None:
            bar.set_postfix_str("compiling and collecting the warm-up steps")
            state = fns.warmup(state)
            step = int(np.max(distributed.gather(fns.steps(state))))
            bar.update(step - bar.n)
        if step == 0 and agent.evaluate_at_start and fns.evaluate is not None:
            bar.set_postfix_str("compiling the evaluation")
            evaluate(None, None)
        first = True
        while step < agent.total_steps and alive.any() and chunk < (agent.num_chunks or 1 << 62):
            if first:
                bar.set_postfix_str("compiling (the first chunk takes longest)")
            t0 = time.perf_counter()
            keys = agent.keys.chunk(seeds, chunk)
            while True:  # redo the chunk with another build while the agent asks for one
                new_state, m = fns.train_chunk(state, keys)
                m = distributed.gather(m)
                bigger = agent.regrow(m, alive) if agent.regrow else None
                if bigger is None:
                    break
                agent, fns = bigger, _compiled(bigger)
            dt = time.perf_counter() - t0
            finite = np.asarray(m["finite"], bool).reshape(n, -1).all(axis=1)
            for i in np.nonzero(alive & ~finite)[0]:
                detail = (
                    agent.explain(m, int(i), step)
                    if agent.explain
                    else f"non-finite loss or parameters in the chunk after step {step}"
                )
                msg = (
                    f"{detail} for seed {seeds[i]}; the seed was frozen at step {step}, the "
                    "others went on."
                )
                messages.append(msg)
                alive[i] = False
                if folder is not None:
                    folder.log({"step": step, "seed": seeds[i], "event": "diverged",
                                "message": msg})  # fmt: skip
                if on_row is not None:
                    on_row(int(i), {"step": step, "seed": seeds[i], "finite": False,
                                    "error": msg})  # fmt: skip
            state = _where_seeds(alive, new_state, state)
            chunk += 1
            if not alive.any():
                break
            step = int(np.max(distributed.gather(fns.steps(state))))
            evaluate(m, dt)
            if first:  # the ETA counts from here, not from the compilation
                bar.reset(total=agent.total_steps)
                bar.initial = bar.n = bar.last_print_n = step
                first = False
            bar.update(step - bar.n)
            bar.set_postfix_str(_postfix(rows[-int(alive.sum()) :]))
            due = checkpoint_every and step - (last_ckpt or 0) >= checkpoint_every
            end = step >= agent.total_steps or chunk == agent.num_chunks
            if folder is not None and (due or end):
                save()
                last_ckpt = step
        if messages and folder is not None and (last_ckpt or -1) < step:
            save()
            last_ckpt = step
    except KeyboardInterrupt:
        bar.close()
        where = (
            f"the last checkpoint is at step {last_ckpt:,} ({folder.checkpoint}); resume with: "
            f"{folder.resume_command()}"
            if folder is not None and last_ckpt is not None
            else "no checkpoint was written"
            + (
                f" (the first was due at step {checkpoint_every:,}); to start over, delete "
                f"{folder.path}"
                if folder is not None and checkpoint_every
                else ""
            )
        )
        raise Interrupted(
            f"interrupted at step {step:,} of {agent.total_steps:,}; {where}"
        ) from None
    bar.close()
    dead = [s for s, a in zip(seeds, alive, strict=True) if not a]
    return Result(rows, state, dead, messages, agent)


def _postfix(rows: list[dict]) -> str:
    """A short progress summary: mean evaluation return (and success) of the living seeds."""
    out = []
    for key, fmt in (("eval_return", ".1f"), ("eval_success", ".2f"), ("return", ".3g")):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out.append(f"{key.removeprefix('eval_')}={np.mean(vals):{fmt}}")
    return " ".join(out)


def summary(rows: list[dict], key: str, seeds: Sequence[int], diverged: Sequence[int]) -> str:
    """The last `key` of every seed as 'mean ± sd over N seeds (min..max)', diverged named."""
    last: dict[int, float] = {}
    for r in rows:
        if r.get(key) is not None:
            last[r["seed"]] = r[key]
    if not last:
        return f"{key}: no finite value"
    v = np.array(list(last.values()))
    sd = f" ± {v.std(ddof=1):.3g} sd" if v.size > 1 else ""
    text = f"{key} {v.mean():.4g}{sd} over {v.size} seed(s) ({v.min():.4g} .. {v.max():.4g})"
    if diverged:
        text += f"; diverged: seeds {list(diverged)} (frozen at their last finite step)"
    missing = [s for s in seeds if s not in last and s not in diverged]
    if missing:
        warnings.warn(f"seeds {missing} have no {key}", stacklevel=2)
    return text
