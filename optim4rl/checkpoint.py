"""Checkpoints of meta-parameters, in the toolkit's one container (`optim4rl.container`). Never pickle.

Format "optim4rl.meta_params" version 3: a container {"header": <JSON text>, "payload": <nested map
of arrays>} whose header holds the optimizer kind, its hyperparameters, the number of
meta-parameters, the creation time, free-form provenance (how the file was made), optionally a list
of amendments (later, recorded edits of the header), and a SHA-256 covering the header and the
arrays. Files are written atomically, and never with NaN or infinite meta-parameters.

Older files still load, through named compatibility functions:
- version 2 ({"header", "meta_params"}; the SHA-256 covers header and arrays, as in version 3), the
  format of the shipped `pretrained/*.msgpack`;
- version 1 (its SHA-256 covers the arrays only): `_load_v1` checks the header fields the arrays
  determine (kind, num_meta_params), checks the optimizer-relevant fields (kind, num_meta_params,
  hyperparameters) against the hash-covered header of a shipped file with the same arrays (the
  shipped files were format 1 until they were rewritten), and warns about the fields nothing
  covers. `upgrade(path)` rewrites an older file in the current format, recording it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from optim4rl import container, networks
from optim4rl.container import CheckpointError, LegacyFile, atomic_write_bytes
from optim4rl.networks import MetaParams

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "digest",
    "load_meta_params",
    "pretrained",
    "pretrained_names",
    "save_meta_params",
    "upgrade",
    "write_checkpoint",
]

FORMAT = "optim4rl.meta_params"
FORMAT_VERSION = 3  # 3: the container (payload key "payload"); 2: header hashed too; 1: arrays only
SUFFIX = ".msgpack"
HEADER_FIELDS = frozenset(
    {"format", "format_version", "kind", "hyperparameters", "num_meta_params", "sha256"}
    | {"created", "provenance", "amendments"}
)
REQUIRED_FIELDS = ("format", "format_version", "kind", "sha256")
# format 1: what the arrays determine, and what only a shipped file's hashed header can confirm
V1_DETERMINED = ("kind", "num_meta_params")
V1_CONFIRMED = ("kind", "num_meta_params", "hyperparameters")


def digest(header: dict[str, Any], meta_params: MetaParams) -> str:
    """SHA-256 of a checkpoint: the header without its "sha256" as sorted-key JSON, a NUL byte,
    then the msgpack bytes of the meta-parameters (format version 1: the meta-parameters only)."""
    payload = serialization.msgpack_serialize(meta_params)
    if header.get("format_version") == 1:
        return hashlib.sha256(payload).hexdigest()
    return container.digest(header, payload)


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
    container.check_finite(arrays, "refusing to save")
    header = {
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
    """Write `header` and `meta_params` to `path` atomically in the current format (its "format",
    "format_version" and "sha256" are set anew).

    The low-level half of `save_meta_params`, also used to amend a header on record: add an entry
    {"date": ..., "change": ...} to header["amendments"] and write the file again.
    """
    try:
        return container.save(path, FORMAT, FORMAT_VERSION, header, _to_numpy(meta_params))
    except TypeError as err:
        raise TypeError(f"provenance must be JSON-serialisable: {err}") from err


def load_meta_params(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[MetaParams, dict[str, Any]]:
    """Read a checkpoint written by `save_meta_params` (or an older format); returns
    (meta_params, header).

    Raises FileNotFoundError for a missing path, and CheckpointError (naming the file) for a file
    that is truncated or corrupted, of another format, of a newer format version, whose header lacks
    a required field or has fields this version does not know (a newer format), whose header or
    arrays fail the SHA-256 check, of another kind than `kind` (when given), whose arrays do not
    have the shapes of that kind, or that holds NaN or infinite meta-parameters. A format-1 file
    also warns (its header is only partly verifiable; see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no meta-parameter checkpoint at {path}")
    meta_params, header = container.load(
        path, FORMAT, FORMAT_VERSION, legacy={1: _load_v1, 2: _load_v2}
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
    _check_layout(meta_params, file_kind, path)
    return meta_params, header


def _load_v2(f: LegacyFile) -> tuple[MetaParams, dict[str, Any]]:
    """Format 2 ({"header", "meta_params"}): the same SHA-256 as the container, other key."""
    if f.key != "meta_params":
        raise CheckpointError(f"{f.path} is not a {FORMAT} checkpoint (no meta_params)")
    if f.header.get("sha256") != container.digest(f.header, f.data):
        raise CheckpointError(
            f"{f.path} is corrupted: its header or meta-parameters fail the SHA-256 check"
        )
    container.check_finite(f.tree, f"{f.path} is unusable")
    return f.tree, f.header


def _load_v1(f: LegacyFile) -> tuple[MetaParams, dict[str, Any]]:
    """Format 1: the SHA-256 covers the arrays only. The header is checked as far as anything
    covers it: kind and num_meta_params against the arrays; kind, num_meta_params and
    hyperparameters against a shipped file with the same arrays; a warning names the rest."""
    path, header, arrays = f.path, f.header, f.tree
    if f.key != "meta_params":
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint (no meta_params)")
    sha = hashlib.sha256(f.data).hexdigest()
    if header.get("sha256") != sha:
        raise CheckpointError(f"{path} is corrupted: its meta-parameters fail the SHA-256 check")
    container.check_finite(arrays, f"{path} is unusable")
    try:
        determined = {
            "kind": networks.infer_kind(arrays),
            "num_meta_params": networks.num_meta_params(arrays),
        }
    except Exception as err:
        raise CheckpointError(f"{path}: meta-parameters are not a tree of arrays ({err})") from err
    edited = [k for k in V1_DETERMINED if k in header and header[k] != determined[k]]
    if edited:
        raise CheckpointError(
            f"{path}: the header of this format-1 file was edited: "
            + ", ".join(
                f"{k} is {header[k]!r} but the meta-parameters give {determined[k]!r}"
                for k in edited
            )
        )
    shipped = _shipped_headers().get(sha)
    if shipped is not None:
        name, reference = shipped
        edited = [k for k in V1_CONFIRMED if header.get(k) != reference.get(k)]
        if edited:
            raise CheckpointError(
                f"{path}: the header of this format-1 file was edited: it holds the meta-parameters "
                f"of the shipped {name!r}, whose hash-covered header has other {', '.join(edited)} "
                f"({', '.join(f'{reference.get(k)!r}' for k in edited)})"
            )
    unverified = sorted(
        set(header)
        - set(V1_DETERMINED if shipped is None else V1_CONFIRMED)
        - {"format", "format_version", "sha256"}
    )
    warnings.warn(
        f"{path} is a format-1 meta-parameter checkpoint: its SHA-256 covers the arrays only, so "
        f"an edit of the header field(s) {', '.join(unverified)} cannot be detected; check them, "
        f"then rewrite the file in the current format with optim4rl.checkpoint.upgrade({str(path)!r})",
        stacklevel=4,
    )
    return arrays, header


def _shipped_headers() -> dict[str, tuple[str, dict[str, Any]]]:
    """{format-1 SHA-256 of the arrays: (name, hash-covered header)} of the shipped files."""
    out = {}
    folder = resources.files("optim4rl") / "pretrained"
    for name in pretrained_names():
        with resources.as_file(folder / f"{name}{SUFFIX}") as p:
            # never through _load_v1 (no recursion): the shipped files carry a header hash
            meta_params, header = container.load(p, FORMAT, FORMAT_VERSION, legacy={2: _load_v2})
        sha = hashlib.sha256(serialization.msgpack_serialize(meta_params)).hexdigest()
        out[sha] = (name, header)
    return out


def upgrade(path: str | os.PathLike) -> Path:
    """Rewrite an older meta-parameter checkpoint in the current format, in place; the change is
    recorded in header["amendments"]. A current file is left as it is. Returns the path."""
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the format-1 warning: the amendment below records it
        meta_params, header = load_meta_params(path)
    old = header["format_version"]
    if old == FORMAT_VERSION:
        return path
    change = (
        f"rewritten in checkpoint format version {FORMAT_VERSION} (the optim4rl.container) from "
        f"version {old}; meta-parameters unchanged (format-1 SHA-256 of their msgpack bytes: "
        f"{hashlib.sha256(serialization.msgpack_serialize(meta_params)).hexdigest()})"
    )
    if old == 1:
        change += (
            "; format 1 hashed the meta-parameters only, so the header fields other than kind "
            "and num_meta_params were taken as found"
        )
    entry = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "change": change}
    header = {**header, "amendments": [*header.get("amendments", []), entry]}
    return write_checkpoint(path, header, meta_params)


def _check_layout(meta_params: MetaParams, kind: str, path: Path) -> None:
    try:
        diff = networks.layout_mismatch(meta_params, kind)
    except Exception as err:
        raise CheckpointError(f"{path}: meta-parameters are not a tree of arrays ({err})") from err
    if diff:
        raise CheckpointError(
            f"{path}: meta-parameters do not have the {kind!r} layout: {diff[:6]}"
        )


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
