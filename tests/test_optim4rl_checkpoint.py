"""Checkpoint round trips and every error case, on real files."""

import hashlib
import json

import jax
import numpy as np
import pytest
from flax import serialization

import optim4rl
from optim4rl import checkpoint


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
        payload = serialization.msgpack_serialize(contents["meta_params"])
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
    contents["meta_params"]["head_g"]["bias"] = np.array([np.inf], np.float32)
    path.write_bytes(serialization.msgpack_serialize(contents))
    _rewrite_header(path)  # a file whose hash is consistent: written by a buggy or older writer
    with pytest.raises(optim4rl.CheckpointError, match=f"{path} .*non-finite.*head_g.*bias"):
        optim4rl.load_meta_params(path)


def test_format_1_files_still_load_with_their_payload_only_hash(tmp_path, meta_params):
    path = optim4rl.save_meta_params(tmp_path / "m.msgpack", meta_params)
    contents = serialization.msgpack_restore(path.read_bytes())
    payload = serialization.msgpack_serialize(contents["meta_params"])
    _rewrite_header(
        path, rehash=False, format_version=1, sha256=hashlib.sha256(payload).hexdigest()
    )
    loaded, header = optim4rl.load_meta_params(path)
    assert header["format_version"] == 1 and optim4rl.num_meta_params(loaded) == 514


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
