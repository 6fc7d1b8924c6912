"""RESeL and meta_train checkpoints on the container: real states written by the real code, every
damage refused with the file named, legacy bytes (written here as the old code wrote them) still
loading to the same arrays, and what legacy files can still be checked for."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

import optim4rl
from meta_train import checkpoint as mt
from meta_train.config import preset
from meta_train.pipeline import Pipeline
from resel import checkpoint as rc
from resel import config as C
from resel import envs
from resel.algorithm import make_train
from resel.networks import NetConfig
from tests.test_optim4rl_checkpoint import DAMAGES, assert_same_arrays, check_refused, damage

# ---- RESeL ----------------------------------------------------------------------------------

NET = NetConfig(
    pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=2, ffn_dim=16,
    obs_embed=16, act_embed=16, hidden=32, n_critics=4,
)  # fmt: skip
CFG = C.Config(
    net=NET, total_steps=800, warmup_steps=200, batch_size=200, max_trajs_per_batch=4,
    eval_every=200, eval_episodes=2, checkpoint_every=200, buffer_size=1200,
)  # fmt: skip
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def resel_state():
    """A real RESeL training state of two seeds, as `trainer.init` builds it."""
    env, env_params = envs.make("Pendulum-P")
    trainer = make_train(CFG, env, env_params)
    return jax.device_get(trainer.init(jnp.stack([jax.random.PRNGKey(s) for s in SEEDS])))


def _resel_file(tmp_path, state, **extra):
    path = tmp_path / rc.CHECKPOINT
    rc.save_checkpoint(path, state, CFG, SEEDS, {"layout": {"batch_rows": 4}, **extra})
    return path


def _resel_load(path, template):
    return rc.load_checkpoint(path, template, CFG, SEEDS)


def test_resel_round_trip_records_its_legitimate_nonfinite_leaves(tmp_path, resel_state):
    """q_bounds starts as the empty range [inf, -inf]: non-finite by design, listed in the header."""
    assert not np.all(np.isfinite(resel_state.agent.q_bounds))
    path = _resel_file(tmp_path, resel_state, diverged=[])
    state, header = _resel_load(path, resel_state)
    assert_same_arrays(state, resel_state)
    assert header["format"] == "resel.train_state" and header["format_version"] == 3
    assert header["nonfinite"] == ["['agent']['q_bounds']"]
    assert header["seeds"] == SEEDS and header["step"] == 0 and header["diverged"] == []
    assert json.loads(rc.read_header(path)) == header


def test_resel_diverged_seed_with_nan_round_trips(tmp_path, resel_state):
    nan_critic = jax.tree.map(lambda x: np.asarray(x).copy(), resel_state.agent.critic)
    for leaf in jax.tree.leaves(nan_critic):
        leaf[1] = np.nan  # seed 1 diverged; the run keeps it frozen in the checkpoint
    poisoned = resel_state._replace(agent=resel_state.agent._replace(critic=nan_critic))
    path = _resel_file(tmp_path, poisoned, diverged=[1])
    state, header = _resel_load(path, resel_state)
    assert_same_arrays(state, poisoned)  # assert_array_equal treats NaN == NaN
    assert all("['critic']" in k or "q_bounds" in k for k in header["nonfinite"])
    assert len(header["nonfinite"]) == 1 + len(jax.tree.leaves(nan_critic))


@pytest.mark.parametrize("how", DAMAGES)
def test_resel_refuses_every_damage_naming_the_file(tmp_path, resel_state, how):
    path = _resel_file(tmp_path, resel_state)
    expect = damage(path, how, ("step", 400))
    check_refused(lambda p: _resel_load(p, resel_state), path, expect)
    check_refused(rc.read_header, path, expect)


def test_resel_config_seeds_template_and_other_kind_errors_name_the_file(tmp_path, resel_state):
    path = _resel_file(tmp_path, resel_state)
    other = dataclasses.replace(CFG, gamma=0.5)
    check_refused(lambda p: rc.load_checkpoint(p, resel_state, other, SEEDS), path, "different")
    check_refused(lambda p: rc.load_checkpoint(p, resel_state, CFG, [0, 2]), path, "seeds")
    one_seed = jax.tree.map(lambda x: x[:1], resel_state)
    check_refused(lambda p: _resel_load(p, one_seed), path, "other shapes")
    mt_file = optim4rl.container.save(tmp_path / "mt.msgpack", mt.FORMAT, 2, {}, {"x": np.ones(2)})
    check_refused(
        lambda p: _resel_load(p, resel_state),
        mt_file,
        "holds a meta_train.checkpoint, not a resel.train_state",
    )
    with pytest.raises(FileNotFoundError):
        _resel_load(tmp_path / "none.msgpack", resel_state)


def _resel_v2_bytes(state, config, seeds, step=None, **extra):
    """A checkpoint exactly as resel.checkpoint wrote format 2 (flax msgpack, no hash)."""
    header = {
        "format_version": 2,
        "config": config.to_dict(),
        "seeds": list(seeds),
        "step": int(np.max(np.asarray(state.step))) if step is None else step,
        **extra,
    }
    payload = {"header": json.dumps(header), "state": serialization.to_state_dict(state)}
    return serialization.msgpack_serialize(payload)


def test_resel_format_2_bytes_still_load_and_are_checked(tmp_path, resel_state):
    path = tmp_path / rc.CHECKPOINT
    path.write_bytes(_resel_v2_bytes(resel_state, CFG, SEEDS, layout={"batch_rows": 4}))
    state, header = _resel_load(path, resel_state)
    assert_same_arrays(state, resel_state)
    assert header["format_version"] == 2 and header["layout"] == {"batch_rows": 4}
    assert json.loads(rc.read_header(path)) == header
    # no hash: what the file itself confirms is checked
    path.write_bytes(_resel_v2_bytes(resel_state, CFG, SEEDS, step=400))
    check_refused(lambda p: _resel_load(p, resel_state), path, "header says step 400")
    path.write_bytes(_resel_v2_bytes(resel_state, CFG, [0, 1, 2]))
    check_refused(lambda p: _resel_load(p, resel_state), path, "lists 3 seeds")
    raw = _resel_v2_bytes(resel_state, CFG, SEEDS)
    path.write_bytes(raw[: len(raw) - 100])
    check_refused(lambda p: _resel_load(p, resel_state), path, "truncated")
    path.write_bytes(
        _resel_v2_bytes(resel_state, CFG, SEEDS).replace(
            b'"format_version": 2', b'"format_version": 1'
        )
    )
    check_refused(lambda p: _resel_load(p, resel_state), path, "format version 1")


# ---- meta_train ------------------------------------------------------------------------------

MT_CONFIG = preset("smoke", tasks=("small_dense_short",), units_per_task=2, meta_steps=3)


@pytest.fixture(scope="module")
def meta_state():
    """A real MetaState, as `meta_train.run.train` saves it at meta-step 0 (host arrays)."""
    state = Pipeline(MT_CONFIG).init(jax.random.key(0))
    return jax.device_get(state._replace(step=jnp.int32(7), nonfinite=jnp.int32(2)))


def test_meta_train_round_trip_and_step(tmp_path, meta_state):
    path = tmp_path / "checkpoint.msgpack"
    mt.save_checkpoint(path, meta_state, MT_CONFIG)
    state, header = mt.load_checkpoint(path, meta_state)
    assert_same_arrays(state, meta_state)
    assert header["format"] == "meta_train.checkpoint" and header["format_version"] == 2
    assert header["step"] == 7 and header["config"] == json.loads(json.dumps(MT_CONFIG.to_json()))
    assert mt.checkpoint_step(path) == 7
    from meta_train import run  # the run loop uses these very functions

    assert run.load_checkpoint is mt.load_checkpoint and run._checkpoint_step(path) == 7


@pytest.mark.parametrize("how", DAMAGES)
def test_meta_train_refuses_every_damage_naming_the_file(tmp_path, meta_state, how):
    path = tmp_path / "checkpoint.msgpack"
    mt.save_checkpoint(path, meta_state, MT_CONFIG)
    expect = damage(path, how, ("step", 8))
    check_refused(lambda p: mt.load_checkpoint(p, meta_state), path, expect)
    check_refused(mt.checkpoint_step, path, expect)


def test_meta_train_refuses_nan_on_save_other_kinds_and_other_shapes(tmp_path, meta_state):
    path = tmp_path / "checkpoint.msgpack"
    bad = meta_state._replace(
        meta_params=jax.tree.map(lambda x: x * np.nan, meta_state.meta_params)
    )
    with pytest.raises(optim4rl.CheckpointError, match="refusing to save.*non-finite"):
        mt.save_checkpoint(path, bad, MT_CONFIG)
    assert not path.exists()
    resel_file = optim4rl.container.save(tmp_path / "r.msgpack", rc.FORMAT, 3, {}, meta_state)
    check_refused(
        lambda p: mt.load_checkpoint(p, meta_state),
        resel_file,
        "holds a resel.train_state, not a meta_train.checkpoint",
    )
    mt.save_checkpoint(path, meta_state, MT_CONFIG)
    other = Pipeline(dataclasses.replace(MT_CONFIG, units_per_task=3)).init(jax.random.key(0))
    check_refused(lambda p: mt.load_checkpoint(p, jax.device_get(other)), path, "other shapes")


def _meta_train_v1_bytes(state, config, step=None):
    """A checkpoint exactly as meta_train.run wrote format 1 (flax msgpack, no hash)."""
    header = {
        "format": "meta_train.checkpoint",
        "format_version": 1,
        "step": int(state.step) if step is None else step,
        "config": config.to_json(),
    }
    tree = jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(state))
    return serialization.msgpack_serialize({"header": json.dumps(header), "state": tree})


def test_meta_train_format_1_bytes_still_load_and_are_checked(tmp_path, meta_state):
    path = tmp_path / "checkpoint.msgpack"
    path.write_bytes(_meta_train_v1_bytes(meta_state, MT_CONFIG))
    state, header = mt.load_checkpoint(path, meta_state)
    assert_same_arrays(state, meta_state)
    assert header["format_version"] == 1 and mt.checkpoint_step(path) == 7
    path.write_bytes(_meta_train_v1_bytes(meta_state, MT_CONFIG, step=3))
    check_refused(lambda p: mt.load_checkpoint(p, meta_state), path, "meta-step 3 but")
    nan = meta_state._replace(
        meta_params=jax.tree.map(lambda x: x * np.nan, meta_state.meta_params)
    )
    path.write_bytes(_meta_train_v1_bytes(nan, MT_CONFIG))
    check_refused(lambda p: mt.load_checkpoint(p, meta_state), path, "non-finite")
