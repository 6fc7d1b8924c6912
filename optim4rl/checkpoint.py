"""Checkpoints of meta-parameters: one msgpack file with a JSON header. Never pickle.

File layout (a msgpack map, written by flax.serialization):
  {"header": <JSON text>, "meta_params": <nested map of arrays>}
The header holds the format name and version, the optimizer kind, its hyperparameters, the number of
meta-parameters, the creation time, free-form provenance (how the file was made), optionally a list
of amendments (later, recorded edits of the header), and a SHA-256 that covers both the header (every
other field, as sorted-key JSON) and the serialized meta-parameters, so that neither can change
unnoticed. Format version 1 hashed only the meta-parameters; such files still load.
Files are written atomically (temporary file, fsync, rename), so a crash while saving
never leaves a half-written checkpoint in place of a good one.
"""

from __future__ import annotations

import difflib
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
FORMAT_VERSION = 2
SUFFIX = ".msgpack"
HEADER_FIELDS = frozenset(
    {"format", "format_version", "kind", "hyperparameters", "num_meta_params", "sha256"}
    | {"created", "provenance", "amendments"}
)
REQUIRED_FIELDS = ("format", "format_version", "kind", "sha256")


class CheckpointError(ValueError):
    """A file that is not a readable meta-parameter checkpoint of the expected kind."""


def digest(header: dict[str, Any], meta_params: MetaParams) -> str:
    """SHA-256 of a checkpoint: the header without its "sha256" as sorted-key JSON, a NUL byte,
    then the msgpack bytes of the meta-parameters (format version 1: the meta-parameters only)."""
    payload = serialization.msgpack_serialize(meta_params)
    if header.get("format_version") == 1:
        return hashlib.sha256(payload).hexdigest()
    fields = {k: v for k, v in header.items() if k != "sha256"}
    text = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(text + b"\0" + payload).hexdigest()


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
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "provenance": provenance,
    }
    return write_checkpoint(path, header, arrays)


def write_checkpoint(
    path: str | os.PathLike, header: dict[str, Any], meta_params: MetaParams
) -> Path:
    """Write `header` (its "sha256" recomputed) and `meta_params` to `path` atomically.

    The low-level half of `save_meta_params`, also used to amend a header on record: add an entry
    {"date": ..., "change": ...} to header["amendments"] and write the file again.
    """
    arrays = _to_numpy(meta_params)
    header = {k: v for k, v in header.items() if k != "sha256"}
    try:
        header["sha256"] = digest(header, arrays)
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

    Raises FileNotFoundError for a missing path, and CheckpointError (naming the file) for a file
    that is truncated or corrupted, of another format, of a newer format version, whose header lacks
    a required field or has fields this version does not know (a newer format), whose header or
    arrays fail the SHA-256 check, of another kind than `kind` (when given), whose arrays do not
    have the shapes of that kind, or that holds NaN or infinite meta-parameters.
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
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a JSON header that is not an object")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written in format version {version}, newer than the version this "
            f"optim4rl reads ({FORMAT_VERSION}); upgrade optim4rl to load it"
        )
    missing = [f for f in REQUIRED_FIELDS if f not in header]
    if missing:
        raise CheckpointError(f"{path}: the header lacks the field(s) {', '.join(missing)}")
    unknown = sorted(set(header) - HEADER_FIELDS)
    if unknown:
        raise CheckpointError(
            f"{path}: the header has field(s) {', '.join(unknown)} that format version "
            f"{FORMAT_VERSION} does not define (written by a newer optim4rl?); upgrade optim4rl "
            "to load it"
        )
    file_kind = header["kind"]
    if file_kind not in networks.KINDS:
        raise CheckpointError(
            f"{path} holds an unknown optimizer kind {file_kind!r}; kinds are "
            f"{', '.join(networks.KINDS)}"
        )
    if kind is not None and networks.check_kind(kind) != file_kind:
        raise CheckpointError(
            f"{path} holds meta-parameters of a {file_kind!r} optimizer, not {kind!r}"
        )
    meta_params = contents["meta_params"]
    if header["sha256"] != digest(header, meta_params):
        covered = "meta-parameters" if version == 1 else "header or meta-parameters"
        raise CheckpointError(f"{path} is corrupted: its {covered} fail the SHA-256 check")
    _check_layout(meta_params, file_kind, path)
    _check_finite(meta_params, f"{path} is unusable")
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


def _check_finite(meta_params: MetaParams, what: str) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(meta_params)
    bad = [jax.tree_util.keystr(k) for k, v in leaves if not np.all(np.isfinite(v))]
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
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise LookupError(f"no pretrained optimizer named {name!r}{hint}; available: {listed}")
    with resources.as_file(resources.files("optim4rl") / "pretrained" / f"{name}{SUFFIX}") as p:
        return load_meta_params(p)
