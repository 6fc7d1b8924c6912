"""Checkpoint round trips and every error case, on real files: the container
(`optim4rl.container`) and the meta-parameter checkpoints on it, their legacy formats included.

The damage helpers (`damage`, `container_digest`) edit files with flax msgpack and hashlib only,
as the format defines them, and are shared with tests/test_checkpoints.py."""

import hashlib
import json
import re
import warnings
from typing import NamedTuple

import jax
import numpy as np
import pytest
from flax import serialization

import optim4rl
from optim4rl import checkpoint, container


@pytest.fixture(scope="module")
def meta_params():
    return optim4rl.init_meta_params(jax.random.key(0))


@pytest.mark.parametrize("kind", optim4rl.KINDS)
def test_round_trip_keeps_values_kind_and_provenance(tmp_path, kind):
    mp = optim4rl.init_meta_params(jax.random.key(1), kind)
    path = optim4rl.save_meta_params(
        tmp_path / "sub" / "m.msgpack", mp, kind=kind, preset="cpu", meta_steps=12, seed=3
    )
    loaded, header = optim4rl.load_meta_params(path)
    assert header["kind"] == kind and header["format_version"] == checkpoint.FORMAT_VERSION
    assert header["provenance"] == {"preset": "cpu", "meta_steps": 12, "seed": 3}
    assert header["num_meta_params"] == optim4rl.num_meta_params(mp)
    assert header["hyperparameters"]["grad_clip"] == 1.0
    same = jax.tree_util.tree_map(np.array_equal, loaded, mp)
    assert all(jax.tree_util.tree_leaves(same))
    # The loaded tree drives the optimizer exactly like the original.
    g = np.linspace(-1, 1, 7).astype(np.float32)
    a = optim4rl.learned(1e-3, mp).update(g, optim4rl.learned(1e-3, mp).init(g))[0]
    b = optim4rl.learned(1e-3, loaded).update(g, optim4rl.learned(1e-3, loaded).init(g))[0]
    np.testing.assert_array_equal(a, b)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta-parameter checkpoint"):
        optim4rl.load_meta_params(tmp_path / "nope.msgpack")


def test_truncated_file(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(optim4rl.CheckpointError, match="truncated or corrupted"):
        optim4rl.load_meta_params(path)


def test_flipped_bytes_in_the_arrays_fail_the_checksum(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # inside the last array's data
    path.write_bytes(bytes(raw))
    with pytest.raises(optim4rl.CheckpointError, match="corrupted"):
        optim4rl.load_meta_params(path)


def test_other_kind_is_refused(tmp_path):
    path = optim4rl.save_meta_params(
        tmp_path / "lin.msgpack", optim4rl.init_meta_params(jax.random.key(0), "lin")
    )
    with pytest.raises(optim4rl.CheckpointError, match="'lin' optimizer, not 'optim4rl'"):
        optim4rl.load_meta_params(path, kind="optim4rl")
    with pytest.raises(optim4rl.SpecError, match="'lin' optimizer"):
        optim4rl.from_spec(f"optim4rl(learning_rate=1e-3, path='{path}')")


def _rewrite_header(path, rehash=True, drop=(), **changes):
    """Edit a saved header in place; rehash=True recomputes the SHA-256 by hand (hashlib, as the
    format defines it), so that only the check under test can refuse the file."""
    contents = serialization.msgpack_restore(path.read_bytes())
    header = json.loads(contents["header"])
    header.update(changes)
    for key in drop:
        header.pop(key)
    if rehash:
        fields = json.dumps({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True)
        payload = serialization.msgpack_serialize(contents["payload"])
        header["sha256"] = hashlib.sha256(fields.encode() + b"\0" + payload).hexdigest()
    contents["header"] = json.dumps(header)
    path.write_bytes(serialization.msgpack_serialize(contents))


def test_an_edited_header_fails_the_checksum(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params, seed=0)
    _rewrite_header(path, rehash=False, provenance={"seed": 1})
    with pytest.raises(optim4rl.CheckpointError, match=f"{path} is corrupted: its header"):
        optim4rl.load_meta_params(path)


def test_header_without_kind_or_with_unknown_fields_names_the_file(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    good = path.read_bytes()
    _rewrite_header(path, drop=("kind",))
    with pytest.raises(optim4rl.CheckpointError, match=f"{path}: the header lacks .*kind"):
        optim4rl.load_meta_params(path)
    path.write_bytes(good)
    _rewrite_header(path, optimizer_state_layout="v3")  # a field a newer minor format might add
    with pytest.raises(optim4rl.CheckpointError, match=f"{path}: .*optimizer_state_layout"):
        optim4rl.load_meta_params(path)


def test_nan_meta_parameters_are_refused_on_load_with_the_path(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    contents = serialization.msgpack_restore(path.read_bytes())
    contents["payload"]["head_g"]["bias"] = np.array([np.inf], np.float32)
    path.write_bytes(serialization.msgpack_serialize(contents))
    _rewrite_header(path)  # a file whose hash is consistent: written by a buggy or older writer
    with pytest.raises(optim4rl.CheckpointError, match=f"{path} .*non-finite.*head_g.*bias"):
        optim4rl.load_meta_params(path)


def test_format_1_files_still_load_with_their_payload_only_hash(tmp_path, meta_params):
    path = tmp_path / "m.msgpack"
    path.write_bytes(legacy_meta_params_bytes(meta_params, version=1))
    with pytest.warns(UserWarning, match="format-1"):
        loaded, header = optim4rl.load_meta_params(path)
    assert header["format_version"] == 1 and optim4rl.num_meta_params(loaded) == 514
    assert_same_arrays(loaded, meta_params)


def test_newer_format_version_is_refused(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    _rewrite_header(path, format_version=checkpoint.FORMAT_VERSION + 1)
    with pytest.raises(optim4rl.CheckpointError, match="newer than the version"):
        optim4rl.load_meta_params(path)


def test_foreign_msgpack_and_wrong_layout_are_refused(tmp_path, meta_params):
    other = tmp_path / "other.msgpack"
    other.write_bytes(serialization.msgpack_serialize({"params": np.zeros(3)}))
    with pytest.raises(optim4rl.CheckpointError, match="not a optim4rl.meta_params checkpoint"):
        optim4rl.load_meta_params(other)
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    _rewrite_header(path, kind="lin")  # header claims a kind the arrays do not have
    with pytest.raises(optim4rl.CheckpointError, match="do not have the 'lin' layout"):
        optim4rl.load_meta_params(path)


def test_save_refuses_nan_and_keeps_the_previous_file(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params, note="good")
    bad = jax.tree_util.tree_map(lambda x: x * np.nan, meta_params)
    with pytest.raises(optim4rl.CheckpointError, match="non-finite"):
        optim4rl.save_meta_params(path, bad)
    _, header = optim4rl.load_meta_params(path)
    assert header["provenance"] == {"note": "good"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.msgpack"]  # no temporary file left


def test_save_refuses_a_kind_that_does_not_match_the_layout(tmp_path, meta_params):
    with pytest.raises(optim4rl.CheckpointError, match="layout of 'optim4rl', not 'lin'"):
        optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params, kind="lin")


def test_pretrained_unknown_name_lists_the_available_ones():
    with pytest.raises(LookupError, match="no pretrained optimizer named 'nope'; available"):
        optim4rl.pretrained("nope")
    with pytest.raises(LookupError, match="'gridwrld' \\(did you mean gridworld"):
        optim4rl.pretrained("gridwrld")


@pytest.mark.parametrize("name", ["gridworld", "gridworld_lin", "gridworld_l2lgd2"])
def test_shipped_files_are_format_2_and_record_their_amendments(name):
    assert name in optim4rl.pretrained_names()
    mp, header = optim4rl.pretrained(name)  # passes the header-covering SHA-256
    assert header["format_version"] == 2 and header["kind"] in optim4rl.KINDS
    assert header["num_meta_params"] == optim4rl.num_meta_params(mp)
    assert header["provenance"]["meta_steps"] > 0 and header["amendments"][-1]["date"]


# ---- shared helpers: legacy bytes and damage, by hand (flax msgpack + hashlib) -----------------


def assert_same_arrays(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def container_digest(header, payload):
    """The container's SHA-256 as its docstring defines it."""
    fields = json.dumps({k: v for k, v in header.items() if k != "sha256"}, sort_keys=True)
    data = serialization.msgpack_serialize(payload)
    return hashlib.sha256(fields.encode() + b"\0" + data).hexdigest()


def _float_leaves(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return [x for x in leaves if x.dtype == np.float32 and x.size >= 4 and np.all(np.isfinite(x))]


DAMAGES = ("truncated", "flipped", "header", "other_format", "newer", "nan")


def damage(path, how, header_edit):
    """Damage a container file at `path` in place; returns the message it must be refused with.

    header_edit: (field, value) written into the header without rehashing ("header")."""
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
        return "truncated or corrupted"
    contents = serialization.msgpack_restore(raw)
    header, payload = json.loads(contents["header"]), contents["payload"]
    if how == "flipped":  # the lowest mantissa bit of a float in the largest float array
        unique = [x.tobytes() for x in _float_leaves(payload) if raw.count(x.tobytes()) == 1]
        data = max(unique, key=len)  # bytes found once: surely that array's data
        at = raw.find(data)
        flipped = bytearray(raw)
        flipped[at + 4 * (len(data) // 8)] ^= 0x01  # little-endian: byte 0 of a float32
        path.write_bytes(bytes(flipped))
        return "fail the SHA-256 check"
    if how == "header":
        field, value = header_edit
        assert header[field] != value
        header[field] = value  # the old hash is kept
        expect = "fail the SHA-256 check"
    elif how == "other_format":
        was, header["format"] = header["format"], "other.thing"
        expect = f"holds a other.thing, not a {was}"
    elif how == "newer":
        header["format_version"] += 1
        expect = "newer than the version"
    elif how == "nan":
        target = max(_float_leaves(payload), key=lambda x: x.size)
        poisoned = target.copy()
        poisoned.reshape(-1)[0] = np.nan
        payload = jax.tree_util.tree_map(lambda x: poisoned if x is target else x, payload)
        contents["payload"] = payload
        expect = "non-finite"
    else:
        raise ValueError(how)
    if how != "header":
        header["sha256"] = container_digest(header, payload)  # only the check under test refuses
    contents["header"] = json.dumps(header)
    path.write_bytes(serialization.msgpack_serialize(contents))
    return expect


def check_refused(load, path, expect):
    """load(path) raises CheckpointError whose message names the file and matches `expect`."""
    with pytest.raises(optim4rl.CheckpointError, match=re.escape(str(path)) + ".*" + expect):
        load(path)


def legacy_meta_params_bytes(meta_params, version, **header_changes):
    """A meta-parameter file exactly as optim4rl wrote format 1 or 2 (flax msgpack)."""
    arrays = jax.tree_util.tree_map(lambda x: np.asarray(x, dtype=np.float32), meta_params)
    header = {
        "format": "optim4rl.meta_params",
        "format_version": version,
        "kind": "optim4rl",
        "hyperparameters": {"grad_clip": 1.0, "eps": 1e-8, "learning_rate": 1e-3},
        "num_meta_params": optim4rl.num_meta_params(arrays),
        "created": "2026-11-25T12:00:00Z",
        "provenance": {"preset": "cpu"},
        **header_changes,
    }
    payload = serialization.msgpack_serialize(arrays)
    if version == 1:
        header["sha256"] = hashlib.sha256(payload).hexdigest()
    else:
        fields = json.dumps(header, sort_keys=True)
        header["sha256"] = hashlib.sha256(fields.encode() + b"\0" + payload).hexdigest()
    return serialization.msgpack_serialize(
        {"header": json.dumps(header, sort_keys=True), "meta_params": arrays}
    )


# ---- the container --------------------------------------------------------------------------


class _State(NamedTuple):
    w: np.ndarray
    inner: dict


def _state():
    return _State(np.arange(6, dtype=np.float32).reshape(2, 3), {"n": np.int32(3)})


def test_container_round_trip_restores_into_the_template(tmp_path):
    path = container.save(tmp_path / "a" / "s.msgpack", "test.state", 2, {"note": "x"}, _state())
    contents = serialization.msgpack_restore(path.read_bytes())
    assert list(contents) == ["header", "payload"]
    header = json.loads(contents["header"])
    assert header["format"] == "test.state" and header["format_version"] == 2
    assert header["sha256"] == container_digest(header, contents["payload"])
    template = _State(np.zeros((2, 3), np.float32), {"n": np.int32(0)})
    state, loaded = container.load(path, "test.state", 2, template)
    assert isinstance(state, _State) and loaded == header
    assert_same_arrays(state, _state())
    assert container.read_header(path) == header
    with pytest.raises(FileNotFoundError):
        container.load(tmp_path / "none.msgpack", "test.state", 2)


@pytest.mark.parametrize(
    "template, expect",
    [
        (_State(np.zeros((3, 2), np.float32), {"n": np.int32(0)}), "other shapes: ..w"),
        (_State(np.zeros((2, 3), np.float32), {}), "unexpected .*'n'"),
        ({"w": np.zeros((2, 3), np.float32)}, "missing|unexpected"),
    ],
)
def test_container_refuses_a_tree_unlike_the_template(tmp_path, template, expect):
    path = container.save(tmp_path / "s.msgpack", "test.state", 1, {}, _state())
    check_refused(lambda p: container.load(p, "test.state", 1, template), path, expect)


@pytest.mark.parametrize("how", DAMAGES)
def test_container_refuses_every_damage_naming_the_file(tmp_path, how):
    path = container.save(tmp_path / "s.msgpack", "test.state", 1, {"note": "x"}, _state())
    expect = damage(path, how, ("note", "y"))
    check_refused(lambda p: container.load(p, "test.state", 1), path, expect)
    check_refused(lambda p: container.read_header(p, "test.state", 1), path, expect)


def test_container_nonfinite_leaves_are_recorded_only_when_allowed(tmp_path):
    state = _State(np.array([[np.inf, 0, 1], [2, 3, np.nan]], np.float32), {"n": np.int32(1)})
    with pytest.raises(optim4rl.CheckpointError, match="refusing to save.*non-finite.*'w'"):
        container.save(tmp_path / "s.msgpack", "test.state", 1, {}, state)
    assert not list(tmp_path.iterdir())
    path = container.save(tmp_path / "s.msgpack", "test.state", 1, {}, state, allow_nonfinite=True)
    payload, header = container.load(path, "test.state", 1, allow_nonfinite=True)
    assert header["nonfinite"] == ["['w']"]
    np.testing.assert_array_equal(payload["w"], state.w)
    check_refused(lambda p: container.load(p, "test.state", 1), path, "non-finite")
    # a non-finite value in a leaf the header does not list is refused even where allowed
    contents = serialization.msgpack_restore(path.read_bytes())
    header, payload = json.loads(contents["header"]), contents["payload"]
    payload["inner"]["m"] = np.array([1.0, np.nan], np.float32)
    header["sha256"] = container_digest(header, payload)
    contents["header"] = json.dumps(header)
    path.write_bytes(serialization.msgpack_serialize(contents))
    check_refused(
        lambda p: container.load(p, "test.state", 1, allow_nonfinite=True), path, "'inner'.*'m'"
    )


def test_container_refuses_foreign_legacy_and_trailing_bytes(tmp_path):
    path = tmp_path / "x.msgpack"
    path.write_bytes(serialization.msgpack_serialize([np.zeros(3)]))
    check_refused(lambda p: container.load(p, "test.state", 1), path, "not a msgpack map")
    path.write_bytes(b"")
    check_refused(lambda p: container.load(p, "test.state", 1), path, "truncated")
    path.write_bytes(serialization.msgpack_serialize({"header": "{}", "state": np.zeros(3)}))
    check_refused(lambda p: container.load(p, "test.state", 1), path, "not a test.state")
    path.write_bytes(legacy_meta_params_bytes(optim4rl.init_meta_params(jax.random.key(0)), 2))
    check_refused(
        lambda p: container.load(p, "optim4rl.meta_params", 3), path, "before the .*container"
    )
    good = container.save(tmp_path / "s.msgpack", "test.state", 1, {}, _state())
    good.write_bytes(good.read_bytes() + b"\x00")
    check_refused(lambda p: container.load(p, "test.state", 1), good, "1 bytes after its end")


# ---- meta-parameters on the container --------------------------------------------------------


@pytest.mark.parametrize("how", DAMAGES)
def test_meta_params_refuse_every_damage_naming_the_file(tmp_path, meta_params, how):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params, seed=0)
    expect = damage(path, how, ("hyperparameters", {"grad_clip": 1.0, "eps": 1.0}))
    check_refused(optim4rl.load_meta_params, path, expect)


def test_meta_params_other_kind_of_checkpoint_is_named(tmp_path, meta_params):
    path = container.save(tmp_path / "r.msgpack", "resel.train_state", 3, {}, meta_params)
    check_refused(
        optim4rl.load_meta_params, path, "holds a resel.train_state, not a optim4rl.meta_params"
    )


def test_format_2_bytes_load_unchanged_and_are_verified(tmp_path, meta_params):
    path = tmp_path / "m.msgpack"
    path.write_bytes(legacy_meta_params_bytes(meta_params, version=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # format 2's header is hashed: nothing to warn about
        loaded, header = optim4rl.load_meta_params(path)
    assert header["format_version"] == 2 and header["provenance"] == {"preset": "cpu"}
    assert_same_arrays(loaded, meta_params)
    contents = serialization.msgpack_restore(path.read_bytes())
    edited = json.loads(contents["header"])
    edited["hyperparameters"]["learning_rate"] = 1.0
    contents["header"] = json.dumps(edited)
    path.write_bytes(serialization.msgpack_serialize(contents))
    check_refused(optim4rl.load_meta_params, path, "fail the SHA-256 check")


def test_format_1_header_edits_are_noticed(tmp_path):
    """Format 1 hashed the arrays only. Edited kind or num_meta_params: refused (the arrays give
    them); edited hyperparameters of a shipped file's arrays: refused (its hashed header gives
    them); of other arrays: a warning that names the file, the unverifiable fields and upgrade."""
    mine = optim4rl.init_meta_params(jax.random.key(5))
    path = tmp_path / "m.msgpack"
    for edit, expect in [
        ({"kind": "lin"}, "kind is 'lin' but the meta-parameters give 'optim4rl'"),
        ({"num_meta_params": 513}, "num_meta_params is 513 but the meta-parameters give 514"),
    ]:
        path.write_bytes(legacy_meta_params_bytes(mine, 1, **edit))
        check_refused(optim4rl.load_meta_params, path, "header of this format-1 file was edited")
        check_refused(optim4rl.load_meta_params, path, expect)

    edited_lr = {"grad_clip": 1.0, "eps": 1e-8, "learning_rate": 0.5}
    path.write_bytes(legacy_meta_params_bytes(mine, 1, hyperparameters=edited_lr))
    with pytest.warns(UserWarning) as record:
        _, header = optim4rl.load_meta_params(path)
    (message,) = [str(w.message) for w in record]
    assert str(path) in message and "hyperparameters" in message and "provenance" in message
    assert "optim4rl.checkpoint.upgrade(" in message
    assert header["hyperparameters"]["learning_rate"] == 0.5  # loaded, but not unnoticed

    shipped, reference = optim4rl.pretrained("gridworld")
    as_shipped = {k: reference[k] for k in ("kind", "hyperparameters", "provenance", "created")}
    path.write_bytes(legacy_meta_params_bytes(shipped, 1, **as_shipped))
    with pytest.warns(UserWarning, match="format-1"):
        _, header = optim4rl.load_meta_params(path)  # the shipped header's values: accepted
    as_shipped["hyperparameters"] = {**reference["hyperparameters"], "learning_rate": 0.5}
    path.write_bytes(legacy_meta_params_bytes(shipped, 1, **as_shipped))
    check_refused(optim4rl.load_meta_params, path, "shipped 'gridworld'.*other hyperparameters")


@pytest.mark.parametrize("version", [1, 2])
def test_upgrade_rewrites_an_older_file_in_the_current_format(tmp_path, meta_params, version):
    path = tmp_path / "m.msgpack"
    path.write_bytes(legacy_meta_params_bytes(meta_params, version))
    assert checkpoint.upgrade(path) == path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, header = optim4rl.load_meta_params(path)
    assert header["format_version"] == checkpoint.FORMAT_VERSION
    assert header["provenance"] == {"preset": "cpu"} and header["created"].startswith("2026-11")
    (entry,) = header["amendments"]
    assert f"from version {version}" in entry["change"] and entry["date"]
    assert ("taken as found" in entry["change"]) == (version == 1)
    assert_same_arrays(loaded, meta_params)
    before = path.read_bytes()
    checkpoint.upgrade(path)  # already current: unchanged
    assert path.read_bytes() == before


def test_atomic_write_and_error_are_importable_as_before():
    assert checkpoint.atomic_write_bytes is container.atomic_write_bytes
    assert optim4rl.CheckpointError is checkpoint.CheckpointError is container.CheckpointError
    assert issubclass(container.CheckpointError, ValueError)
