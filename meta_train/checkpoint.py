"""Meta-training checkpoints: the whole MetaState in the toolkit's container (`optim4rl.container`).

Format "meta_train.checkpoint" version 2: header {"step", "config"} (plus the container's format,
version and SHA-256 over header and arrays); the state is finite by construction (a non-finite
meta-step leaves it unchanged), so non-finite leaves are refused.
Version 1 ({"header", "state"}, no hash) still loads through `_load_v1`, which checks what its
arrays and header can confirm: the step and skip counters against the header, the config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from meta_train.config import MetaTrainConfig
from optim4rl import container
from optim4rl.container import CheckpointError, LegacyFile

if TYPE_CHECKING:
    from meta_train.pipeline import MetaState

FORMAT = "meta_train.checkpoint"
FORMAT_VERSION = 2  # 2: the optim4rl container (hashed); 1: {"header", "state"}, no hash


def save_checkpoint(path: str | os.PathLike, state: MetaState, config: MetaTrainConfig) -> None:
    """Write the whole state (host arrays, e.g. `distributed.gather(state)`) atomically."""
    header = {"step": int(state.step), "config": config.to_json()}
    container.save(path, FORMAT, FORMAT_VERSION, header, state)


def load_checkpoint(path: str | os.PathLike, template: MetaState) -> tuple[MetaState, dict]:
    """Restore a MetaState shaped like `template`; returns (state, header).

    FileNotFoundError for a missing file, CheckpointError (naming it) for anything else wrong."""
    return container.load(Path(path), FORMAT, FORMAT_VERSION, template, legacy={1: _load_v1})


def checkpoint_step(path: str | os.PathLike) -> int:
    """The meta-step a checkpoint was written at (the file is verified first)."""
    header = container.read_header(
        path, FORMAT, FORMAT_VERSION, allow_nonfinite=False, legacy={1: _load_v1}
    )
    return int(header["step"])


def _load_v1(f: LegacyFile) -> tuple[Any, dict[str, Any]]:
    """Version 1: no hash, so check what the file itself can confirm."""
    path, header, tree = f.path, f.header, f.tree
    if f.key != "state" or not isinstance(tree, dict) or "step" not in tree:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (no state)")
    try:
        MetaTrainConfig.from_json(header["config"])
        step = int(np.asarray(tree["step"]))
        skipped = int(np.asarray(tree.get("nonfinite", 0)))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable version-1 header or state ({err})") from err
    if header.get("step") != step:
        raise CheckpointError(
            f"{path}: the header says meta-step {header.get('step')!r} but the state is at {step} "
            "(an edited or mismatched version-1 file)"
        )
    if not 0 <= skipped <= step:
        raise CheckpointError(f"{path}: the state skipped {skipped} of {step} meta-steps")
    container.check_finite(tree, f"{path} is unusable")
    return tree, header
