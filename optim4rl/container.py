"""The one checkpoint container of the toolkit: a msgpack file with a hashed JSON header. Never pickle.

File layout (a msgpack map of two entries, in this order):
  {"header": <JSON text>, "payload": <nested map of numpy arrays, as flax.serialization writes>}
The header holds the caller's fields plus "format" (what the payload is, e.g. "resel.train_state"),
"format_version" and "sha256": the SHA-256 of the other header fields as sorted-key JSON, a NUL
byte, then the msgpack bytes of the payload, so that neither can change unnoticed. Float leaves
must be finite unless the writer allows non-finite values; then the header lists the leaves that
hold them ("nonfinite"), and no other leaf may.

`load` raises FileNotFoundError for a missing file and `CheckpointError` (a ValueError whose message
names the file) for every other failure. Files written before the container (other top-level keys)
load only through the compatibility functions a caller names in `legacy`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import msgpack
import numpy as np
from flax import serialization

HEADER = "header"
PAYLOAD = "payload"
RESERVED = ("format", "format_version", "sha256", "nonfinite")


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of the expected format; the message names it."""


class LegacyFile(NamedTuple):
    """A file written before the container, as a compatibility function receives it."""

    path: Path
    header: dict[str, Any]  # the parsed JSON header, unverified
    key: str  # the top-level key of its tree ("meta_params", "state")
    data: bytes  # the msgpack bytes of that tree, as stored (what older formats hashed)
    tree: Any  # that tree, restored


# (file) -> (payload, header): verifies what the old format allows, raises CheckpointError
Legacy = Callable[[LegacyFile], tuple[Any, dict[str, Any]]]


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


def digest(header: dict[str, Any], payload: bytes | memoryview) -> str:
    """SHA-256 of the header without "sha256" as sorted-key JSON, a NUL, the payload's msgpack bytes."""
    fields = {k: v for k, v in header.items() if k != "sha256"}
    text = json.dumps(fields, sort_keys=True).encode()
    h = hashlib.sha256(text + b"\0")
    h.update(payload)
    return h.hexdigest()


def nonfinite_leaves(tree: Any) -> list[str]:
    """Paths (`jax.tree_util.keystr`) of the float leaves of `tree` that hold NaN or inf."""
    bad = []
    for key, leaf in jax.tree_util.tree_leaves_with_path(tree):
        x = np.asarray(leaf)
        if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
            bad.append(jax.tree_util.keystr(key))
    return bad


def check_finite(tree: Any, what: str, allowed: frozenset[str] | set[str] = frozenset()) -> None:
    """CheckpointError "{what}: non-finite values in <leaves>" for non-finite leaves not `allowed`."""
    bad = [k for k in nonfinite_leaves(tree) if k not in allowed]
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise CheckpointError(f"{what}: non-finite values in {shown}")


def save(
    path: str | os.PathLike,
    format: str,
    version: int,
    header: dict[str, Any],
    payload: Any,
    *,
    allow_nonfinite: bool = False,
) -> Path:
    """Write `payload` (a tree of arrays) under `header` as container `format` `version`, atomically.

    Non-finite float leaves are refused (CheckpointError naming them) unless `allow_nonfinite`;
    then their paths go to header["nonfinite"]. Returns the path.
    """
    arrays = jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(payload))
    bad = nonfinite_leaves(arrays)
    if bad and not allow_nonfinite:
        check_finite(arrays, f"refusing to save {format} to {path}")
    fields = {k: v for k, v in header.items() if k not in RESERVED}
    fields.update(format=format, format_version=version)
    if bad:
        fields["nonfinite"] = bad
    data = serialization.msgpack_serialize(arrays)
    try:
        fields["sha256"] = digest(fields, data)
        text = json.dumps(fields, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"checkpoint header must be JSON-serialisable: {err}") from err
    # the payload's bytes are written as hashed (msgpack is context-free: a map of two entries)
    prefix = msgpack.packb({HEADER: text, PAYLOAD: None})[:-1]  # ... "payload" key, minus nil
    path = Path(path)
    atomic_write_bytes(path, prefix + data)
    return path


def _split(path: Path, raw: bytes) -> dict[Any, bytes]:
    """The top-level map of a msgpack file as {key: the msgpack bytes of its value}."""
    unpacker = msgpack.Unpacker(
        io.BytesIO(raw), raw=False, strict_map_key=False, max_buffer_size=max(len(raw), 1)
    )
    view = memoryview(raw)  # slices without copies (a RESeL replay buffer can be large)
    parts: dict[Any, bytes] = {}
    try:
        try:
            n = unpacker.read_map_header()
        except msgpack.OutOfData:
            raise
        except ValueError as err:  # a msgpack value, but not a map (or not msgpack at all)
            raise CheckpointError(f"{path} is not a checkpoint (not a msgpack map)") from err
        for _ in range(n):
            key = unpacker.unpack()
            start = unpacker.tell()
            unpacker.skip()
            parts[key if isinstance(key, str) else repr(key)] = view[start : unpacker.tell()]
    except CheckpointError:
        raise
    except Exception as err:  # msgpack raises several unrelated types for bad bytes
        raise CheckpointError(
            f"{path} is truncated or corrupted: not a readable msgpack file ({err})"
        ) from err
    if unpacker.tell() != len(raw):
        raise CheckpointError(
            f"{path} is corrupted: {len(raw) - unpacker.tell()} bytes after its end"
        )
    return parts


def _tree(path: Path, data: bytes) -> Any:
    try:
        return serialization.msgpack_restore(data)
    except Exception as err:
        raise CheckpointError(f"{path} is corrupted: unreadable arrays ({err})") from err


def _header(path: Path, data: bytes) -> dict[str, Any]:
    try:
        header = json.loads(msgpack.unpackb(data, raw=False))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has an unreadable JSON header ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a JSON header that is not an object")
    return header


def legacy_format(key: str, header: dict[str, Any]) -> str | None:
    """The format a pre-container file holds, from its tree's key and header (None: unknown)."""
    if key == "state" and "format" not in header and {"config", "seeds"} <= set(header):
        return "resel.train_state"  # RESeL wrote no format name
    fmt = header.get("format")
    return fmt if isinstance(fmt, str) else None


def _version(path: Path, header: dict[str, Any], fmt: str, version: int | None) -> int:
    v = header.get("format_version")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise CheckpointError(f"{path} has no valid format_version ({v!r})")
    if version is not None and v > version:
        raise CheckpointError(
            f"{path} was written in format version {v} of {fmt}, newer than the version this "
            f"code reads ({version}); upgrade optim4rl to load it"
        )
    return v


def load(
    path: str | os.PathLike,
    format: str | None,
    version: int | None,
    template: Any = None,
    *,
    allow_nonfinite: bool = False,
    legacy: Mapping[int, Legacy] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Read and verify a container of `format` up to `version`; returns (payload, header).

    `template`: restore the payload into it (`restore`). `allow_nonfinite`: accept the non-finite
    leaves the header lists. `legacy`: {format version: compatibility function} for files written
    before the container. `format`/`version` None accept any format/version (as `read_header`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {format or 'checkpoint'} file at {path}")
    raw = path.read_bytes()
    parts = _split(path, raw)
    what = format or "checkpoint"
    if HEADER not in parts:
        raise CheckpointError(f"{path} is not a {what} checkpoint (no header)")
    header = _header(path, parts[HEADER])
    others = [k for k in parts if k != HEADER]
    if PAYLOAD not in parts:
        key = others[0] if len(others) == 1 else None
        fmt = legacy_format(key, header) if key is not None else None
        if fmt is None:
            raise CheckpointError(f"{path} is not a {what} checkpoint (no header / payload)")
        if format is not None and fmt != format:
            raise CheckpointError(f"{path} holds a {fmt}, not a {format}")
        v = _version(path, header, fmt, version)
        if legacy is None or v not in legacy:
            raise CheckpointError(
                f"{path} is a {fmt} file of format version {v}, written before the checkpoint "
                "container, which this code does not load"
            )
        payload, header = legacy[v](
            LegacyFile(path, header, key, parts[key], _tree(path, parts[key]))
        )
    else:
        if others != [PAYLOAD]:
            raise CheckpointError(f"{path} is not a {what} checkpoint (entries {others})")
        fmt = header.get("format")
        if not isinstance(fmt, str):
            raise CheckpointError(f"{path} is not a {what} checkpoint (no format in the header)")
        if format is not None and fmt != format:
            raise CheckpointError(f"{path} holds a {fmt}, not a {format}")
        _version(path, header, fmt, version)
        if header.get("sha256") != digest(header, parts[PAYLOAD]):
            raise CheckpointError(
                f"{path} is corrupted: its header or payload fail the SHA-256 check"
            )
        payload = _tree(path, parts[PAYLOAD])
        recorded = header.get("nonfinite", [])
        if recorded and not allow_nonfinite:
            shown = ", ".join(map(str, recorded[:8])) + (" ..." if len(recorded) > 8 else "")
            raise CheckpointError(f"{path} is unusable: it records non-finite values in {shown}")
        check_finite(payload, f"{path} is unusable", set(recorded))
    if template is not None:
        payload = restore(path, template, payload)
    return payload, header


def read_header(
    path: str | os.PathLike,
    format: str | None = None,
    version: int | None = None,
    *,
    allow_nonfinite: bool = True,
    legacy: Mapping[int, Legacy] | None = None,
) -> dict[str, Any]:
    """The header of a container, verified as `load` does (the whole file is read)."""
    return load(path, format, version, allow_nonfinite=allow_nonfinite, legacy=legacy)[1]


def restore(path: str | os.PathLike, template: Any, payload: Any) -> Any:
    """`payload` restored into `template` (flax.serialization.from_state_dict); the leaf paths
    and shapes must match, or CheckpointError."""

    def paths(tree: Any) -> dict[str, Any]:
        return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}

    want, got = paths(serialization.to_state_dict(template)), paths(payload)
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise CheckpointError(
            f"{path} does not match the expected structure: missing {missing[:6]}, "
            f"unexpected {extra[:6]}"
        )
    wrong = [
        f"{k}: {np.shape(got[k])} (expected {np.shape(v)})"
        for k, v in want.items()
        if np.shape(got[k]) != np.shape(v)
    ]
    if wrong:
        raise CheckpointError(f"{path} has arrays of other shapes: {', '.join(wrong[:6])}")
    try:
        return serialization.from_state_dict(template, payload)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} does not match the expected structure ({err})") from err
