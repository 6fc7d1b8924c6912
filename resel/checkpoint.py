"""RESeL checkpoints: the whole training state as flax msgpack with a JSON header, written
atomically (never pickle)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from optim4rl.checkpoint import atomic_write_bytes
from resel.algorithm import TrainState
from resel.config import Config, from_dict

CHECKPOINT = "checkpoint.msgpack"
FORMAT_VERSION = 2  # 2: AgentState.q_bounds


def save_checkpoint(
    path: Path,
    state: TrainState,
    config: Config,
    seeds: Sequence[int],
    extra: dict[str, Any] | None = None,
) -> None:
    """Whole training state (networks, optimizers, replay buffer, envs) as msgpack, atomically.

    `extra`: more JSON header fields (the run loop's batch layout and frozen seeds)."""
    header = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "seeds": list(seeds),
        "step": int(np.max(np.asarray(state.step))),  # frozen (diverged) seeds lag behind
        **(extra or {}),
    }
    payload = {"header": json.dumps(header), "state": flax.serialization.to_state_dict(state)}
    atomic_write_bytes(path, flax.serialization.msgpack_serialize(payload))


def read_header(path: Path) -> str:
    raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(raw, dict) or "header" not in raw:
        raise ValueError(f"{path} is not a RESeL checkpoint (no header)")
    return raw["header"]


def load_checkpoint(
    path: Path, template: TrainState, config: Config, seeds: Sequence[int]
) -> tuple[TrainState, dict]:
    """Restore a checkpoint into `template`; a different config, seeds or format is an error."""
    raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(raw, dict) or "header" not in raw or "state" not in raw:
        raise ValueError(f"{path} is not a RESeL checkpoint (no header/state)")
    header = json.loads(raw["header"])
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {header.get('format_version')}, expected {FORMAT_VERSION}"
        )
    saved = dataclasses.replace(from_dict(header["config"]), total_steps=config.total_steps)
    if saved != config:
        diff = {
            k: (v, config.to_dict()[k])
            for k, v in saved.to_dict().items()
            if config.to_dict()[k] != v
        }
        raise ValueError(f"{path} was written with a different config: {diff} (saved, now)")
    if list(header["seeds"]) != list(seeds):
        raise ValueError(f"{path} holds seeds {header['seeds']}, not {list(seeds)}")
    state = flax.serialization.from_state_dict(template, raw["state"])
    return jax.tree.map(jnp.asarray, state), header
