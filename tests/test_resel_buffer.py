"""Trajectory buffer: batches equal a plain-Python layout of the same trajectories; ring eviction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resel import buffer as rb

LENS = [3, 5, 2, 7, 4, 6, 1, 5]
TERMINATED = {1, 4}  # the other episodes end by time-out


def _episode_rows(ep, length):
    obs = np.array([[ep, t] for t in range(length + 1)], np.float32)  # o_0..o_L
    act = np.array([[ep + 0.1 * t] for t in range(length)], np.float32)
    rew = np.array([10 * ep + t for t in range(length)], np.float32)
    term = np.zeros(length, np.float32)
    if ep in TERMINATED:
        term[-1] = 1.0
    return obs, act, rew, term


def _fill(capacity, max_trajs, lens=LENS):
    buf = rb.init_buffer(capacity, max_trajs, obs_dim=2, act_dim=1)
    add = jax.jit(rb.add)
    for ep, length in enumerate(lens):
        obs, act, rew, term = _episode_rows(ep, length)
        for t in range(length):
            done = jnp.asarray(t == length - 1)
            buf = add(buf, obs[t], act[t], rew[t], jnp.asarray(term[t]), obs[t + 1], done)
    return buf


def _reference(ids, layout, lens=LENS):
    """Lay out the trajectories `ids` (in draw order) with plain Python, as the module doc says."""
    R, W, K = layout.rows, layout.row_len, layout.k_zero
    out = {k: np.zeros((R, W) + s, np.float32) for k, s in
           [("obs", (2,)), ("act", (1,)), ("rew", ()), ("term", ()), ("mask", ()), ("start", ()),
            ("last_obs", (2,)), ("last_act", (1,)), ("last_rew", ())]}  # fmt: skip
    row, col, total = 0, 0, 0
    for j, ep in enumerate(ids):
        if ep < 0:
            continue
        length = lens[ep]
        size = K + length + 1
        if layout.packed:
            if col + size > W:
                row, col = row + 1, 0
        else:
            row, col = j, 0
        obs, act, rew, term = _episode_rows(ep, length)
        out["start"][row, col] = 1.0
        c = col + K
        out["start"][row, c] = 1.0
        out["obs"][row, c : c + length + 1] = obs
        out["act"][row, c : c + length] = act
        out["rew"][row, c : c + length] = rew
        out["term"][row, c : c + length] = term
        out["mask"][row, c : c + length] = 1.0
        out["last_obs"][row, c + 1 : c + length + 1] = obs[:-1]
        out["last_act"][row, c + 1 : c + length + 1] = act
        out["last_rew"][row, c + 1 : c + length + 1] = rew
        col += size
        total += length
    return out, total


@pytest.mark.parametrize("packed", [True, False])
def test_batch_equals_python_layout(packed):
    buf = _fill(capacity=128, max_trajs=16)
    layout = rb.make_layout(12, max(LENS), packed=packed, k_zero=3, max_trajs_per_batch=6)
    if packed:  # a layout that never drops
        layout = rb.make_layout(12, max(LENS), k_zero=3, max_trajs_per_batch=6, rows=6)
    sample = jax.jit(rb.sample, static_argnums=2)
    for seed in range(4):
        batch = sample(buf, jax.random.PRNGKey(seed), layout)
        ids = [int(i) for i in batch.traj_ids]
        used = [i for i in ids if i >= 0]
        assert used and ids[: len(used)] == used  # a prefix of the draws is used
        drawn = [LENS[i] for i in used]
        assert sum(drawn) >= 12 or len(used) == layout.max_trajs_per_batch
        assert sum(drawn[:-1]) < 12  # stops as soon as the batch size is reached
        ref, total = _reference(ids, layout)
        assert int(batch.dropped) == 0
        assert float(batch.mask.sum()) == total
        for name in ("act", "rew", "term", "mask"):
            np.testing.assert_array_equal(getattr(batch, name), ref[name], err_msg=name)
        for name in ("obs", "last_obs", "last_act", "start"):
            np.testing.assert_array_equal(getattr(batch.seq, name), ref[name], err_msg=name)
        np.testing.assert_array_equal(batch.seq.last_rew[..., 0], ref["last_rew"])
        assert batch.seq.obs.shape == (layout.rows, layout.row_len, 2)  # fixed shapes


def test_ring_evicts_overwritten_trajectories_only():
    lens = [4, 6, 3, 5, 2, 6, 4]
    cap = 20
    buf = _fill(capacity=cap, max_trajs=32, lens=lens)
    starts = np.cumsum([0] + [n + 1 for n in lens])[:-1]  # each trajectory uses L + 1 rows
    write = int(starts[-1] + lens[-1] + 1)
    assert int(buf.write) == write
    intact = [s >= write - cap for s in starts]
    assert int(rb.num_valid(buf)) == sum(intact) == 3
    layout = rb.make_layout(30, max(lens), k_zero=2, max_trajs_per_batch=8, rows=8)
    for seed in range(5):
        batch = rb.sample(buf, jax.random.PRNGKey(seed), layout)
        ids = [int(i) for i in batch.traj_ids if i >= 0]
        assert min(ids) >= len(lens) - 3
        ref, _ = _reference([int(i) for i in batch.traj_ids], layout, lens)
        np.testing.assert_array_equal(batch.seq.obs, ref["obs"])
    # the trajectory-record ring evicts too: with room for 2 records only the last 2 are sampled
    small = _fill(capacity=256, max_trajs=2, lens=lens)
    assert int(rb.num_valid(small)) == 2


def test_default_layout_drops_what_does_not_fit_and_counts_it():
    buf = _fill(capacity=128, max_trajs=16)
    layout = rb.make_layout(12, max(LENS), k_zero=3, max_trajs_per_batch=6, row_len=16, rows=1)
    for seed in range(6):
        batch = rb.sample(buf, jax.random.PRNGKey(seed), layout)
        ids = [int(i) for i in batch.traj_ids]
        placed = [LENS[i] for i in ids if i >= 0]
        assert sum(k + 3 + 1 for k in placed) <= 16  # only what fits in the one row
        assert float(batch.mask.sum()) == sum(placed)
        ref, _ = _reference(ids, layout)
        np.testing.assert_array_equal(batch.seq.obs, ref["obs"])
    assert layout.rows == 1


def test_empty_buffer_gives_empty_batch_and_bad_row_len_is_rejected():
    buf = rb.init_buffer(64, 8, 2, 1)
    layout = rb.make_layout(8, 5, k_zero=2)
    batch = rb.sample(buf, jax.random.PRNGKey(0), layout)
    assert float(batch.mask.sum()) == 0.0 and int((batch.traj_ids >= 0).sum()) == 0
    with pytest.raises(ValueError, match="row_len 8 cannot hold"):
        rb.make_layout(8, 10, row_len=8)


def test_short_episodes_fill_the_batch_once_the_run_loop_grows_the_layout():
    """The issue's case: batch 2000, episodes of 20 steps, room for 1000-step ones. The default
    layout (64 trajectories) delivers 1280 transitions; `train.grown` (what the run loop does when
    a batch comes out short) doubles trajectories and rows until every batch holds >= 2000."""
    from resel import config, train

    buf = _fill(capacity=1100, max_trajs=64, lens=[20] * 50)  # drawn with replacement
    cfg = config.Config(batch_size=2000, k_zero=10)
    layout = rb.make_layout(2000, 1000, k_zero=10, max_trajs_per_batch=cfg.max_trajs_per_batch)
    sample = jax.jit(rb.sample, static_argnums=2)
    assert float(sample(buf, jax.random.PRNGKey(0), layout).mask.sum()) == 64 * 20
    while float(sample(buf, jax.random.PRNGKey(0), layout).mask.sum()) < 2000:
        cfg = train.grown(cfg, layout, 1000)
        layout = rb.make_layout(2000, 1000, k_zero=10, max_trajs_per_batch=cfg.max_trajs_per_batch,
                                rows=cfg.batch_rows)  # fmt: skip
    assert (layout.max_trajs_per_batch, layout.rows) == (128, 4)  # 100 trajectories of 31 steps
    for seed in range(3):
        batch = sample(buf, jax.random.PRNGKey(seed), layout)
        assert float(batch.mask.sum()) == 2000 and int(batch.dropped) == 0
