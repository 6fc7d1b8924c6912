"""Checkpoints of meta-parameters: one msgpack file with a JSON header. Never pickle.

File layout (a msgpack map, written by flax.serialization):
  {"header": <JSON text>, "meta_params": <nested map of arrays>}
The header holds the format name and version, the optimizer kind, its hyperparameters, the number of
meta-parameters, a SHA-256 of the serialized meta-parameters, and free-form provenance (how the file
was made). Files are written atomically (temporary file, fsync, rename), so a crash while saving
never leaves a half-written checkpoint in place of a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from optim4rl import networks
from optim4rl.networks import MetaParams

FORMAT = "optim4rl.meta_params"
FORMAT_VERSION = 1
SUFFIX = ".msgpack"


class CheckpointError(ValueError):
    """A file that is not a readable meta-parameter checkpoint of the expected kind."""


def _payload_hash(meta_params: MetaParams) -> str:
    return hashlib.sha256(serialization.msgpack_serialize(meta_params)).hexdigest()


def _to_numpy(meta_params: MetaParams) -> MetaParams:
    return jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=np.float32), meta_params)


def save_meta_params(
    path: str | os.PathLike,
    meta_params: MetaParams,
    kind: str | None = None,
    *,
    hyperparameters: dict[str, Any] | None = None,
    **provenance: Any,
) -> Path:
    """Write meta-parameters and a JSON header to `path` atomically; returns the path.

    Args:
      path: destination file (conventionally `*.msgpack`); parent folders are created.
      meta_params: a tree from `init_meta_params` or meta-training.
      kind: the optimizer kind; checked against the tree's layout (inferred when None).
      hyperparameters: how the optimizer is meant to be used (grad_clip, eps, learning rate, ...).
      **provenance: JSON-serialisable facts about how the file was made (preset, steps, seed, commit).
    """
    inferred = networks.infer_kind(meta_params)
    if kind is not None and networks.check_kind(kind) != inferred:
        raise CheckpointError(f"meta-parameters have the layout of {inferred!r}, not {kind!r}")
    arrays = _to_numpy(meta_params)
    _check_finite(arrays, "refusing to save")
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": inferred,
        "hyperparameters": {"grad_clip": 1.0, "eps": 1e-8, **(hyperparameters or {})},
        "num_meta_params": networks.num_meta_params(arrays),
        "sha256": _payload_hash(arrays),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "provenance": provenance,
    }
    try:
        header_text = json.dumps(header, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"provenance must be JSON-serialisable: {err}") from err
    data = serialization.msgpack_serialize({"header": header_text, "meta_params": arrays})
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one.

    Temporary file in the same folder, fsync, rename, fsync of the folder. Used for every file
    the toolkit writes that a crash must not corrupt (checkpoints, configs, results).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_meta_params(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[MetaParams, dict[str, Any]]:
    """Read a checkpoint written by `save_meta_params`; returns (meta_params, header).

    Raises FileNotFoundError for a missing path, and CheckpointError for a file that is truncated or
    corrupted, of another format, of a newer format version, of another kind than `kind` (when
    given), or whose arrays do not have the shapes of that kind.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no meta-parameter checkpoint at {path}")
    raw = path.read_bytes()
    try:
        contents = serialization.msgpack_restore(raw)
    except Exception as err:  # msgpack raises several unrelated types for bad bytes
        raise CheckpointError(
            f"{path} is truncated or corrupted: not a readable msgpack file ({err})"
        ) from err
    if not isinstance(contents, dict) or not {"header", "meta_params"} <= set(contents):
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (no header / meta_params)")
    try:
        header = json.loads(contents["header"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an unreadable JSON header ({err})") from err
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written in format version {version}, newer than the version this "
            f"optim4rl reads ({FORMAT_VERSION}); upgrade optim4rl to load it"
        )
    file_kind = header.get("kind")
    if kind is not None and networks.check_kind(kind) != file_kind:
        raise CheckpointError(
            f"{path} holds meta-parameters of a {file_kind!r} optimizer, not {kind!r}"
        )
    meta_params = contents["meta_params"]
    if header.get("sha256") != _payload_hash(meta_params):
        raise CheckpointError(f"{path} is corrupted: its meta-parameters fail the SHA-256 check")
    _check_layout(meta_params, networks.check_kind(file_kind), path)
    return meta_params, header


def _check_layout(meta_params: MetaParams, kind: str, path: Path) -> None:
    try:
        diff = networks.layout_mismatch(meta_params, kind)
    except Exception as err:
        raise CheckpointError(f"{path}: meta-parameters are not a tree of arrays ({err})") from err
    if diff:
        raise CheckpointError(
            f"{path}: meta-parameters do not have the {kind!r} layout: {diff[:6]}"
        )


def _flat(tree: Any) -> list[tuple[Any, Any]]:
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _check_finite(meta_params: MetaParams, what: str) -> None:
    bad = [jax.tree_util.keystr(k) for k, v in _flat(meta_params) if not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointError(f"{what}: non-finite meta-parameters in {', '.join(bad)}")


def pretrained_names() -> list[str]:
    """Names of the meta-parameter checkpoints shipped with the package."""
    folder = resources.files("optim4rl") / "pretrained"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def pretrained(name: str) -> tuple[MetaParams, dict[str, Any]]:
    """Load a shipped checkpoint by name (e.g. "gridworld"); returns (meta_params, header)."""
    names = pretrained_names()
    if name not in names:
        listed = ", ".join(names) if names else "none are shipped in this installation"
        raise LookupError(f"no pretrained optimizer named {name!r}; available: {listed}")
    with resources.as_file(resources.files("optim4rl") / "pretrained" / f"{name}{SUFFIX}") as p:
        return load_meta_params(p)
