"""Dynamics of the Optim4RL gridworlds and Catch, checked directly against the spec."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta_train import envs
from meta_train.gridworld import EnvState

N = 4000  # samples for the statistical checks; binomial std <= 0.008


@pytest.fixture(scope="module")
def small():
    env, params = envs.make("small_dense_short")
    step = jax.jit(env.step_env)
    many = jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None, None)))
    return env, params, step, many


def state(agent, objects, present, time=0):
    return EnvState(
        agent=jnp.array(agent, jnp.int32),
        objects=jnp.array(objects, jnp.int32),
        present=jnp.array(present, bool),
        time=jnp.int32(time),
    )


def test_table_matches_spec():
    table = {
        "small_dense_short": ((6, 8), 2, 0.5, 50),
        "small_dense_long": ((8, 6), 2, 0.5, 500),
        "big_sparse_short": ((12, 14), 4, 0.05, 50),
        "big_sparse_long": ((14, 12), 4, 0.05, 500),
        "big_dense_short": ((11, 15), 4, 0.5, 50),
        "big_dense_long": ((15, 11), 4, 0.5, 500),
    }
    for name, (shape, k, respawn, horizon) in table.items():
        env, p = envs.make(name)
        assert (env.rows, env.cols) == shape and env.num_objects == k and env.num_actions == 9
        assert env.observation_space(p).shape == (*shape, k + 1)
        np.testing.assert_allclose(p.respawn_prob, respawn)
        assert p.max_steps_in_episode == horizon
        rewards = np.asarray(p.rewards)
        assert sorted(rewards.tolist()) == sorted([1.0, -1.0] * (k // 2))
        np.testing.assert_allclose(p.terminate_prob, np.where(rewards < 0, 0.5, 0.0))
        walls = np.asarray(p.walls)
        assert walls[0].all() and walls[-1].all() and walls[:, 0].all() and walls[:, -1].all()
        assert not walls[1:-1, 1:-1].any()
    with pytest.raises(ValueError, match="unknown task 'small_dense'"):
        envs.make("small_dense")


def test_walls_block_and_moves(small):
    env, p, step, _ = small
    s = state([1, 1], [[4, 6], [4, 5]], [True, True])
    key = jax.random.key(0)
    for action in (1, 2, 6, 7, 8):  # N, NE, SW, W, NW all hit the top or left wall
        _, s2, r, term, _ = step(key, s, action, p)
        assert s2.agent.tolist() == [1, 1] and float(r) == 0 and not term, action
    expected = {0: [1, 1], 3: [1, 2], 4: [2, 2], 5: [2, 1]}
    for action, pos in expected.items():
        _, s2, _, _, _ = step(key, s, action, p)
        assert s2.agent.tolist() == pos, action
    _, s2, _, _, _ = step(key, s2, 0, p)
    assert int(s2.time) == 2  # one step from s, one more here


def test_collection_reward_and_termination(small):
    env, p, step, many = small
    p0 = p.replace(respawn_prob=jnp.zeros(2))  # keep collected objects away
    keys = jax.random.split(jax.random.key(1), N)
    plus = state([1, 1], [[2, 2], [4, 6]], [True, True])  # +1 object SE of the agent
    _, s2, r, term, _ = many(keys, plus, 4, p0)
    assert np.all(np.asarray(r) == 1.0) and not np.any(term)
    assert not np.any(s2.present[:, 0]) and np.all(s2.present[:, 1])
    minus = state([1, 1], [[4, 6], [2, 2]], [True, True])
    _, s2, r, term, _ = many(keys, minus, 4, p0)
    assert np.all(np.asarray(r) == -1.0)
    assert abs(float(np.mean(term)) - 0.5) < 0.04  # a wrong probability (0.4, 0.6, 1) fails
    # an absent object is not collected
    gone = state([1, 1], [[2, 2], [4, 6]], [False, True])
    _, _, r, _, _ = step(jax.random.key(2), gone, 4, p0)
    assert float(r) == 0.0


@pytest.mark.parametrize("prob", [0.5, 0.05])
def test_respawn_probability_and_cells(small, prob):
    env, p, _, many = small
    p1 = p.replace(respawn_prob=jnp.full((2,), prob))
    s = state([2, 3], [[0, 0], [3, 3]], [False, True])
    n = N if prob == 0.5 else 4 * N
    _, s2, _, _, _ = many(jax.random.split(jax.random.key(3), n), s, 0, p1)
    present = np.asarray(s2.present[:, 0])
    tol = 4 * np.sqrt(prob * (1 - prob) / n)
    assert abs(present.mean() - prob) < tol
    cells = np.asarray(s2.objects[present, 0])
    walls = np.asarray(p.walls)
    assert not walls[cells[:, 0], cells[:, 1]].any()
    # the authors' release: any non-wall cell, the agent's and the other object's included
    free = (~walls).sum()
    if prob == 0.5:  # roughly uniform over the 24 open cells: each gets 1/24 of ~2000 draws
        _, counts = np.unique(cells[:, 0] * 8 + cells[:, 1], return_counts=True)
        assert len(counts) == free
        assert counts.min() > 0.5 * len(cells) / free and counts.max() < 1.5 * len(cells) / free


def test_horizon_truncates_and_resets(small):
    env, p, _, _ = small
    p0 = p.replace(respawn_prob=jnp.zeros(2))
    _, s = env.reset(jax.random.key(4), p0)

    def body(s, key):  # "stay" never collects: only the horizon can end the episode
        _, s, _, term, trunc, _ = env.step(key, s, 0, p0)
        return s, (term, trunc, s.time)

    _, (term, trunc, time) = jax.jit(
        lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(5), 120))
    )(s)
    assert not np.any(term)
    assert np.flatnonzero(np.asarray(trunc)).tolist() == [49, 99]
    assert int(time[49]) == 0 and int(time[50]) == 1  # auto-reset right after the horizon


def test_reset_observation_encoding_and_determinism(small):
    env, p, _, _ = small
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(6), 500)
    obs, s = reset(keys, p)
    obs = np.asarray(obs)
    assert obs.shape == (500, 6, 8, 3) and set(np.unique(obs)) <= {0.0, 1.0}
    assert np.all(obs.sum(axis=(1, 2)) == 1)  # one cell per object channel and the agent
    assert not obs[:, np.asarray(p.walls)].any()
    for i in range(20):
        cells = {tuple(s.agent[i].tolist())} | {tuple(c) for c in s.objects[i].tolist()}
        assert len(cells) == 3  # distinct cells
        assert obs[i, s.agent[i, 0], s.agent[i, 1], 2] == 1
        assert obs[i, s.objects[i, 1, 0], s.objects[i, 1, 1], 1] == 1
    o1, s1 = env.reset(keys[0], p)
    o2, s2 = env.reset(keys[0], p)
    np.testing.assert_array_equal(o1, o2)
    assert any(not np.array_equal(obs[0], obs[i]) for i in range(1, 10))
    a = env.step(jax.random.key(7), s1, 3, p)
    b = env.step(jax.random.key(7), s2, 3, p)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_catch_rewards():
    env, p = envs.make("catch")
    assert env.num_actions == 3 and env.observation_space(p).shape == (10, 5, 1)

    def play(key, follow: bool):
        obs, s = env.reset(key, p)
        total, steps = 0.0, 0
        for _ in range(20):
            toward = jnp.sign(s.ball[1] - s.paddle) + 1
            away = jnp.where(s.ball[1] >= 2, 0, 2)  # run to the far side
            action = toward if follow else away
            obs, s2, r, term, _, _ = env.step(jax.random.key(0), s, action, p)
            total, steps = total + float(r), steps + 1
            if term:
                return total, steps
            assert int(s2.ball[0]) == int(s.ball[0]) + 1  # the ball falls one row a step
            assert obs.sum() == 2
            s = s2
        raise AssertionError("catch did not end")

    for i in range(3):
        assert play(jax.random.key(i), True) == (1.0, 9)
        assert play(jax.random.key(i), False)[0] == -1.0


@pytest.mark.parametrize("layout", ["spatial", "release"])
def test_big_map_conv_layouts_by_hand(layout):
    """The big maps' first layer against a NumPy loop: "spatial" slides a 2x2 window over rows x
    cols with the k + 1 object channels as features (VALID); "release" is the authors' layout, a
    window over (channel x row) of the channel-first observation with the columns as features,
    zero-padded at the end (flax's SAME for an even kernel)."""
    from meta_train.a2c import A2CConfig, ActorCritic

    env, params = envs.make("big_sparse_long")
    obs, _ = env.reset(jax.random.key(0), params)
    obs = obs + jax.random.uniform(jax.random.key(1), obs.shape)  # not only 0/1 entries
    net = ActorCritic(env.num_actions, True, 32, layout)
    variables = net.init(jax.random.key(2), obs[None])
    conv = variables["params"]["conv"]
    _, state = net.apply(variables, obs[None], capture_intermediates=True, mutable=True)
    got = np.asarray(state["intermediates"]["conv"]["__call__"][0][0])
    x = np.asarray(obs) if layout == "spatial" else np.moveaxis(np.asarray(obs), -1, 0)
    if layout == "release":
        x = np.pad(x, ((0, 1), (0, 1), (0, 0)))
    kernel, bias = np.asarray(conv["kernel"]), np.asarray(conv["bias"])
    rows, cols = x.shape[0] - 1, x.shape[1] - 1
    want = np.zeros((rows, cols, 16))
    for i in range(rows):
        for j in range(cols):
            want[i, j] = np.einsum("abc,abcf->f", x[i : i + 2, j : j + 2], kernel) + bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="conv_layout"):
        A2CConfig(task="big_sparse_long", conv_layout="channels")
