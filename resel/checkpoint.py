"""RESeL checkpoints: the whole training state in the toolkit's container (`optim4rl.container`),
written atomically (never pickle).

Format "resel.train_state" version 3: header {"config", "seeds", "step", ...the run loop's extra
fields} plus the container's format, version and SHA-256 over header and arrays. The state may
legitimately hold non-finite values (the empty target range [inf, -inf] of `AgentState.q_bounds`
before the first update; a diverged seed frozen with NaN in it), so they are allowed, and the
header lists the leaves that hold them: a non-finite value anywhere else is refused.
Version 2 ({"header", "state"}, no format name, no hash) still loads through `_load_v2`, which
checks what the file itself can confirm (header fields, the step against the state's).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim4rl import container
from optim4rl.container import CheckpointError, LegacyFile
from resel.algorithm import TrainState
from resel.config import Config, from_dict

CHECKPOINT = "checkpoint.msgpack"
FORMAT = "resel.train_state"
FORMAT_VERSION = 3  # 3: the optim4rl container (hashed); 2: AgentState.q_bounds


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
        "config": config.to_dict(),
        "seeds": list(seeds),
        "step": int(np.max(np.asarray(state.step))),  # frozen (diverged) seeds lag behind
        **(extra or {}),
    }
    container.save(path, FORMAT, FORMAT_VERSION, header, state, allow_nonfinite=True)


def _load(path: str | os.PathLike) -> tuple[Any, dict[str, Any]]:
    return container.load(path, FORMAT, FORMAT_VERSION, allow_nonfinite=True, legacy={2: _load_v2})


def read_header(path: Path) -> str:
    """The JSON header of a checkpoint, verified as `load_checkpoint` does (the file is read)."""
    return json.dumps(_load(path)[1])


def load_checkpoint(
    path: Path, template: TrainState, config: Config, seeds: Sequence[int]
) -> tuple[TrainState, dict]:
    """Restore a checkpoint into `template`; a different config, seeds or format is an error
    (CheckpointError naming the file; FileNotFoundError for a missing one)."""
    payload, header = _load(path)
    try:
        saved = dataclasses.replace(from_dict(header["config"]), total_steps=config.total_steps)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an unreadable config ({err})") from err
    if saved != config:
        diff = {
            k: (v, config.to_dict()[k])
            for k, v in saved.to_dict().items()
            if config.to_dict()[k] != v
        }
        raise CheckpointError(f"{path} was written with a different config: {diff} (saved, now)")
    if list(header["seeds"]) != list(seeds):
        raise CheckpointError(f"{path} holds seeds {header['seeds']}, not {list(seeds)}")
    state = container.restore(path, template, payload)
    return jax.tree.map(jnp.asarray, state), header


def _load_v2(f: LegacyFile) -> tuple[Any, dict[str, Any]]:
    """Version 2: no hash and non-finite values unrecorded, so check what the file can confirm:
    the header's fields and types, and its step against the state's per-seed steps."""
    path, header, tree = f.path, f.header, f.tree
    if f.key != "state" or not isinstance(tree, dict) or "step" not in tree:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (no state)")
    try:
        from_dict(header["config"])
        seeds = [int(s) for s in header["seeds"]]
        steps = np.asarray(tree["step"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable version-2 header or state ({err})") from err
    if steps.shape != (len(seeds),):
        raise CheckpointError(
            f"{path}: the header lists {len(seeds)} seeds but the state holds {steps.shape}"
        )
    if header.get("step") != int(steps.max()):
        raise CheckpointError(
            f"{path}: the header says step {header.get('step')!r} but the state is at "
            f"{int(steps.max())} (an edited or mismatched version-2 file)"
        )
    if not set(header.get("diverged", [])) <= set(seeds):
        raise CheckpointError(f"{path}: diverged seeds {header['diverged']} not in {seeds}")
    return tree, header
