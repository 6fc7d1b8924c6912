"""Trajectory replay buffer on device, and batches of whole trajectories with fixed shapes.

Storage is one stream of rows in collection order (a ring of `capacity` rows): row t of a trajectory
holds (o_t, a_t, r_t, terminated_t), and each finished trajectory of L transitions is followed by a
tail row holding only its final observation o_L. So a trajectory occupies L + 1 consecutive rows and
the networks can be run over o_0..o_L in one pass (outputs at t+1 give the critic target's next step).
A second ring of `max_trajs` entries records (start row, L) of finished trajectories.

A batch draws whole trajectories uniformly until the drawn transitions reach `batch_size` (at most
`max_trajs_per_batch`), and lays them out as fixed-shape rows (rows, row_len):
- packed: trajectories one after another along each row (next fit), each preceded by `k_zero` zero
  steps; start flags on the first zero step and on the trajectory's first step;
- padded: one trajectory per row, zero-padded at the end.
Everything is jittable: the update compiles once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from resel.networks import Seq


class Buffer(NamedTuple):
    obs: jax.Array  # (capacity, obs_dim)
    act: jax.Array  # (capacity, act_dim)
    rew: jax.Array  # (capacity,)
    term: jax.Array  # (capacity,) 1.0 where the episode terminated (not on time-outs)
    write: jax.Array  # () int32: rows written so far (absolute)
    cur_start: jax.Array  # () int32: absolute row where the unfinished trajectory starts
    traj_start: jax.Array  # (max_trajs,) int32 absolute start rows
    traj_len: jax.Array  # (max_trajs,) int32 transitions
    n_traj: jax.Array  # () int32: trajectories finished so far (absolute)


class Batch(NamedTuple):
    seq: Seq  # histories, each (rows, row_len, ...)
    act: jax.Array  # (rows, row_len, act_dim) a_t
    rew: jax.Array  # (rows, row_len) r_t
    term: jax.Array  # (rows, row_len) terminated_t
    mask: jax.Array  # (rows, row_len) 1.0 on real transitions (not zero steps, tails, padding)
    traj_ids: jax.Array  # (max_trajs_per_batch,) absolute trajectory ids, -1 where not used
    dropped: jax.Array  # () trajectories drawn but not placed (0 when the layout is sized right)


@dataclass(frozen=True)
class Layout:
    """Static shape of a batch."""

    batch_size: int
    max_trajs_per_batch: int
    rows: int
    row_len: int
    k_zero: int
    packed: bool


def next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def make_layout(
    batch_size: int,
    max_episode_len: int,
    *,
    packed: bool = True,
    k_zero: int = 10,
    max_trajs_per_batch: int = 64,
    row_len: int | None = None,
    rows: int | None = None,
) -> Layout:
    """Shapes of a batch: rows of power-of-two length >= one trajectory + tail (+ k_zero).

    `rows=None` gives ceil(batch_size / max_episode_len) packed rows (enough when episodes run to
    their time-out, and room for more than batch_size transitions when they are short); trajectories
    that do not fit are left out and counted in `Batch.dropped`. For a layout that never drops,
    pass rows >= `worst_case_rows(...)`: next fit fills any two consecutive rows with more than
    row_len steps, so 2 * ceil(total / row_len) rows hold any draw of `total` steps.
    """
    m = min(max_trajs_per_batch, batch_size)
    if not packed:
        return Layout(batch_size, m, rows or m, next_pow2(max_episode_len + 1), 0, False)
    item = max_episode_len + 1 + k_zero
    width = row_len or next_pow2(item)
    if width < item:
        raise ValueError(f"row_len {width} cannot hold a trajectory of {item} steps (with zeros)")
    worst = worst_case_rows(batch_size, max_episode_len, k_zero, m, width)
    if rows is None:
        rows = min(worst, math.ceil(batch_size / max_episode_len))
    return Layout(batch_size, m, rows, width, k_zero, True)


def worst_case_rows(batch_size: int, max_episode_len: int, k_zero: int, m: int, width: int) -> int:
    """Packed rows that hold any draw of at most m trajectories (see `make_layout`)."""
    total = min(batch_size - 1 + max_episode_len, m * max_episode_len) + m * (1 + k_zero)
    return min(m, max(1, 2 * math.ceil(total / width)))


def init_buffer(capacity: int, max_trajs: int, obs_dim: int, act_dim: int) -> Buffer:
    z = jnp.zeros((), jnp.int32)
    return Buffer(
        obs=jnp.zeros((capacity, obs_dim)),
        act=jnp.zeros((capacity, act_dim)),
        rew=jnp.zeros((capacity,)),
        term=jnp.zeros((capacity,)),
        write=z,
        cur_start=z,
        traj_start=jnp.zeros((max_trajs,), jnp.int32),
        traj_len=jnp.zeros((max_trajs,), jnp.int32),
        n_traj=z,
    )


def add(
    buf: Buffer,
    obs: jax.Array,
    act: jax.Array,
    rew: jax.Array,
    term: jax.Array,
    next_obs: jax.Array,
    done: jax.Array,
) -> Buffer:
    """Append transition (o_t, a_t, r_t, terminated_t, o_{t+1}); `done` (end or time-out) closes the
    trajectory. o_{t+1} is written to the next row, where the next step overwrites it unless done."""
    cap = buf.obs.shape[0]
    w = buf.write
    i, j = w % cap, (w + 1) % cap
    done = done.astype(bool)
    length = w - buf.cur_start + 1
    slot = buf.n_traj % buf.traj_start.shape[0]
    new_write = w + 1 + done.astype(jnp.int32)
    return Buffer(
        obs=buf.obs.at[i].set(obs).at[j].set(next_obs),
        act=buf.act.at[i].set(act).at[j].set(0.0),
        rew=buf.rew.at[i].set(rew).at[j].set(0.0),
        term=buf.term.at[i].set(term.astype(jnp.float32)).at[j].set(0.0),
        write=new_write,
        cur_start=jnp.where(done, new_write, buf.cur_start),
        traj_start=jnp.where(done, buf.traj_start.at[slot].set(buf.cur_start), buf.traj_start),
        traj_len=jnp.where(done, buf.traj_len.at[slot].set(length), buf.traj_len),
        n_traj=buf.n_traj + done.astype(jnp.int32),
    )


def num_valid(buf: Buffer) -> jax.Array:
    """Finished trajectories still intact (their rows not overwritten, their record not evicted)."""
    cap, n_slots = buf.obs.shape[0], buf.traj_start.shape[0]
    k = buf.n_traj - 1 - jnp.arange(n_slots)  # the last n_slots trajectory ids, newest first
    slot = k % n_slots
    ok = (k >= 0) & (buf.traj_start[slot] >= buf.write - cap)
    return jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))  # validity is monotone in the id


def sample(buf: Buffer, key: jax.Array, layout: Layout) -> Batch:
    """Draw whole trajectories until >= batch_size transitions and lay them out (see module doc)."""
    cap, n_slots = buf.obs.shape[0], buf.traj_start.shape[0]
    m, K, W = layout.max_trajs_per_batch, layout.k_zero, layout.row_len
    n_valid = num_valid(buf)
    ids = buf.n_traj - n_valid + jax.random.randint(key, (m,), 0, jnp.maximum(n_valid, 1))
    slots = ids % n_slots
    lens = buf.traj_len[slots]
    before = jnp.cumsum(lens) - lens
    use = (before < layout.batch_size) & (n_valid > 0)
    size = K + lens + 1

    if layout.packed:

        def place(carry, xs):
            row, col = carry
            s, u = xs
            new_row = jnp.where(u & (col + s > W), row + 1, row)
            new_col = jnp.where(u & (col + s > W), 0, col)
            return (new_row, jnp.where(u, new_col + s, new_col)), (new_row, new_col)

        _, (row, col) = jax.lax.scan(place, (jnp.int32(0), jnp.int32(0)), (size, use))
    else:
        row, col = jnp.arange(m), jnp.zeros(m, jnp.int32)
    placed = use & (row < layout.rows) & (col + size <= W)

    # owner[r, c]: the trajectory whose span covers (r, c)
    marks = jnp.zeros((layout.rows, W), jnp.int32)
    marks = marks.at[jnp.where(placed, row, layout.rows), col].set(
        jnp.arange(1, m + 1), mode="drop"
    )
    owner = jax.lax.cummax(marks, axis=1) - 1
    has = owner >= 0
    o = jnp.maximum(owner, 0)
    offset = jnp.arange(W)[None, :] - col[o]
    inside = has & (offset < size[o])
    d = offset - K  # step index within the trajectory; lens[o] is its tail row
    is_row = inside & (d >= 0)
    is_trans = is_row & (d < lens[o])
    idx = (buf.traj_start[slots][o] + jnp.maximum(d, 0)) % cap

    f = lambda x: x.astype(jnp.float32)
    obs = buf.obs[idx] * f(is_row)[..., None]
    act = buf.act[idx] * f(is_trans)[..., None]
    rew = buf.rew[idx] * f(is_trans)
    term = buf.term[idx] * f(is_trans)
    first = f(inside & ((offset == 0) | (d == 0)))
    has_last = f(is_row & (d >= 1))

    def shift(x):
        return jnp.concatenate([jnp.zeros_like(x[:, :1]), x[:, :-1]], axis=1)

    seq = Seq(
        obs=obs,
        last_obs=shift(obs) * has_last[..., None],
        last_act=shift(act) * has_last[..., None],
        last_rew=(shift(rew) * has_last)[..., None],
        start=first,
    )
    return Batch(
        seq=seq,
        act=act,
        rew=rew,
        term=term,
        mask=f(is_trans),
        traj_ids=jnp.where(placed, ids, -1),
        dropped=jnp.sum(use & ~placed),
    )
