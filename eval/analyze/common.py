"""Shared helpers of the RESeL analyses: output folders, files, figures and loading RESeL runs."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optim4rl.checkpoint import atomic_write_bytes


class AnalysisError(ValueError):
    """Bad input to an analysis (missing folder, wrong kind of run, missing metrics)."""


def out_dir(path: str | None, default: str) -> Path:
    """The output folder (created); `default` when no --out was given."""
    out = Path(path or default)
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _plain(x: Any) -> Any:
    """JSON-safe: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(path: Path, data: Any) -> Path:
    atomic_write_bytes(path, json.dumps(_plain(data), indent=1, sort_keys=True).encode())
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else (f"{v:.8g}" if isinstance(v, float) else v) for v in r])
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


@dataclass
class ReselRun:
    """One seed of a RESeL run folder (`python -m resel --out DIR`) restored from its checkpoint."""

    folder: Path
    env_name: str
    config: Any  # resel.config.Config
    seed: int
    step: int
    trainer: Any  # resel.train.Trainer
    state: Any  # resel.train.TrainState of this seed (no seed axis)
    env: Any
    env_params: Any


def load_resel_run(folder: str | Path, seed_index: int = 0, env: tuple | None = None) -> ReselRun:
    """Restore seed `seed_index` of a RESeL run folder (config.json + checkpoint.msgpack)."""
    import jax
    import jax.numpy as jnp

    from resel import train
    from resel.config import from_dict

    folder = Path(folder)
    if not folder.is_dir():
        raise AnalysisError(f"run folder {folder} does not exist")
    ckpt, meta_path = folder / train.CHECKPOINT, folder / "config.json"
    if not ckpt.exists() or not meta_path.exists():
        raise AnalysisError(
            f"{folder} is not a RESeL run folder: it needs config.json and {train.CHECKPOINT} "
            "(the --out of `python -m resel`)"
        )
    meta = json.loads(meta_path.read_text())
    if "env" not in meta:
        raise AnalysisError(f"{meta_path} has no 'env': not written by `python -m resel`")
    header = json.loads(train.read_header(ckpt))
    config = from_dict(header["config"])
    seeds = list(header["seeds"])
    if not 0 <= seed_index < len(seeds):
        raise AnalysisError(f"--seed-index {seed_index}: {folder} holds seeds {seeds}")
    env, env_params = env if env is not None else train.make_env(meta["env"])
    trainer = train.make_train(config, env, env_params)
    template = trainer.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    state, header = train.load_checkpoint(ckpt, template, config, seeds)
    one = jax.tree.map(lambda x: x[seed_index], state)
    return ReselRun(
        folder,
        meta["env"],
        config,
        seeds[seed_index],
        header["step"],
        trainer,
        one,
        env,
        env_params,
    )


def rollout(policy, params, env, env_params, keys, steps: int, params_axis: int | None = None):
    """Deterministic episodes (action tanh(mu), or argmax) from a zero carry, as RESeL evaluates;
    one per key. `params_axis=0` gives each episode its own env params (a batched params tree).

    Returns (seq, alive): the policy inputs `Seq` with fields (episodes, steps, ...), and alive
    (episodes, steps), 1.0 up to and including the step where each first episode ends. After an
    end the env resets (same params) and `start` is 1 on the new episode's first step.
    """
    import jax
    import jax.numpy as jnp

    from resel.networks import Seq

    space = env.action_space(env_params)
    discrete = bool(getattr(space, "discrete", False))
    act_dim = int(space.n) if discrete else int(np.prod(space.shape))
    if not discrete:
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)

    def to_env(a):
        return jnp.argmax(a) if discrete else low + (a + 1.0) * 0.5 * (high - low)

    def one(k, env_params):
        k_reset, k_run = jax.random.split(k)
        obs, s = env.reset(k_reset, env_params)
        obs = obs.reshape(-1)
        carry = policy.apply(params, 1, method=policy.initial_carry)
        z = jnp.zeros(())
        init = (s, obs, jnp.zeros_like(obs), jnp.zeros(act_dim), z, jnp.ones(()), carry, z + 1)

        def body(c, k_t):
            s, o, lo, la, lr, st, carry, alive = c
            inp = Seq(o[None], lo[None], la[None], lr.reshape(1, 1), st.reshape(1))
            (mean, _), carry = policy.apply(params, inp, carry, method=policy.step)
            a = jax.nn.one_hot(jnp.argmax(mean[0]), act_dim) if discrete else jnp.tanh(mean[0])
            o2, s, rew, done, _ = env.step(k_t, s, to_env(a), env_params)
            d = done.astype(jnp.float32)
            r = jnp.asarray(rew, jnp.float32).reshape(())
            rec = (o, lo, la, lr.reshape(1), st, alive)
            nxt = (
                s,
                o2.reshape(-1),
                o * (1 - d),
                a * (1 - d),
                r * (1 - d),
                d,
                carry,
                alive * (1 - d),
            )
            return nxt, rec

        _, rec = jax.lax.scan(body, init, jax.random.split(k_run, steps))
        return rec

    run = jax.jit(jax.vmap(one, in_axes=(0, params_axis)))
    o, lo, la, lr, st, alive = run(keys, env_params)
    return Seq(o, lo, la, lr, st), alive
