"""resel.envs: registry, interface contract and the gymnax-based tasks (cheap, no Brax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from resel import envs
from resel.envs.core import Environment
from resel.envs.spaces import Box, Discrete
from resel.envs.wrappers import EpisodesPerTask
from tests.envs_rollout import rollout

GYMNAX_TASKS = [
    "Pendulum",
    "Pendulum-P",
    "Pendulum-V",
    "CartPole",
    "CartPole-P",
    "CartPole-V",
    "MemoryChain",
    "Wind",
    "KeyToDoor-60",
]


def test_registry_lists_every_suite():
    all_names = envs.names()
    for name in GYMNAX_TASKS:
        assert name in all_names
    assert len(set(all_names)) == len(all_names)
    assert set(envs.names("classic")) <= set(all_names)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="did you mean.*'Pendulum-P'"):
        envs.make("Pendulm-P")


def test_unknown_option_names_the_option():
    with pytest.raises(ValueError, match=r"does not take option\(s\) \['gravity_scale'\]"):
        envs.make("Pendulum-P", gravity_scale=2.0)


@pytest.mark.parametrize("name", GYMNAX_TASKS)
def test_contract_jit_vmap_shapes_determinism_length(name):
    env, params = envs.make(name)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    length = env.episode_length(params)
    n = length + 7 if length < 300 else 300
    run = jax.jit(lambda k: rollout(env, params, k, n))
    out = run(jax.random.key(0))

    # shapes and dtypes as declared
    assert out["obs0"].shape == obs_space.shape and out["obs0"].dtype == obs_space.dtype
    assert out["obs"].shape == (n, *obs_space.shape) and out["obs"].dtype == jnp.float32
    assert out["action"].shape == (n, *act_space.shape)
    assert out["reward"].dtype == jnp.float32 and out["reward"].shape == (n,)
    for flag in ("done", "terminated", "truncated"):
        assert out[flag].dtype == jnp.bool_
    assert bool(jnp.all(jax.vmap(obs_space.contains)(out["final_obs"])))

    # done convention: done == terminated | truncated, never both
    np.testing.assert_array_equal(out["done"], out["terminated"] | out["truncated"])
    assert not bool(jnp.any(out["terminated"] & out["truncated"]))
    # episode length: never longer than declared; reaching it ends the episode
    assert int(out["ep_len"].max()) <= length
    at_limit = out["ep_len"] == length
    assert bool(jnp.all(out["done"][at_limit]))
    # truncated exactly when the declared length is reached without termination
    np.testing.assert_array_equal(out["truncated"], at_limit & ~out["terminated"])
    # auto-reset: after done the state's clock restarts
    assert bool(jnp.all(out["time"][out["done"]] == 0))

    # determinism for a key; a different key differs
    again = run(jax.random.key(0))
    np.testing.assert_array_equal(out["obs"], again["obs"])
    other = run(jax.random.key(1))
    assert not np.array_equal(out["obs"], other["obs"])

    # vmap over keys: each row equals the unbatched rollout with that key
    keys = jax.random.split(jax.random.key(3), 3)
    batched = jax.jit(jax.vmap(run))(keys)
    single = run(keys[1])
    np.testing.assert_allclose(batched["obs"][1], single["obs"], rtol=1e-6, atol=1e-6)


def test_pendulum_times_out_at_200_and_never_terminates():
    env, params = envs.make("Pendulum-P")
    out = rollout(env, params, jax.random.key(0), 401)
    assert not bool(out["terminated"].any())
    np.testing.assert_array_equal(np.flatnonzero(out["done"]), [199, 399])


@pytest.mark.parametrize(
    ("base", "indices", "part"),
    [
        ("Pendulum", [0, 1], "P"),
        ("Pendulum", [2], "V"),
        ("CartPole", [0, 2], "P"),
        ("CartPole", [1, 3], "V"),
    ],
)
def test_occlusion_keeps_the_named_part(base, indices, part):
    full_env, params = envs.make(base)
    env, _ = envs.make(f"{base}-{part}")
    a = rollout(full_env, params, jax.random.key(5), 30)
    b = rollout(env, params, jax.random.key(5), 30)
    np.testing.assert_array_equal(b["obs"], a["obs"][:, indices])
    np.testing.assert_array_equal(b["reward"], a["reward"])
    assert env.hidden.startswith("velocities" if part == "P" else "positions")


def test_cartpole_terminates_and_bootstraps_on_termination_only():
    env, params = envs.make("CartPole-V")
    out = rollout(env, params, jax.random.key(0), 200, policy=lambda k, o, t: jnp.int32(1))
    # always pushing right: the pole falls well before the 200-step time-out
    assert bool(out["terminated"].any()) and not bool(out["truncated"].any())
    first = int(np.flatnonzero(out["done"])[0])
    assert 5 < first < 100


def test_cartpole_times_out_at_200_steps_as_the_releases_cartpole_v0():
    """A balancing controller (push towards the pole's lean) survives; the episode is cut by the
    time-out at 200 steps (gym's CartPole-v0, which the release wraps), on -P / -V too."""
    env, params = envs.make("CartPole")
    balance = lambda k, obs, t: (obs[2] + 0.5 * obs[3] > 0).astype(jnp.int32)
    out = rollout(env, params, jax.random.key(0), 401, policy=balance)
    np.testing.assert_array_equal(np.flatnonzero(out["done"]), [199, 399])
    assert bool(out["truncated"][199]) and not out["terminated"].any()
    for name in ("CartPole-P", "CartPole-V"):
        occluded, p = envs.make(name)
        assert occluded.episode_length(p) == 200


def test_memory_chain_rewards_recall():
    env, params = envs.make("MemoryChain", memory_length=4)
    assert env.episode_length(params) == 5

    def recall(k, obs, t):  # remember context from the first observation: not possible here
        return jnp.int32(0)

    out = rollout(env, params, jax.random.key(0), 50, policy=recall)
    ends = np.flatnonzero(out["done"])
    np.testing.assert_array_equal(ends, np.arange(4, 50, 5))
    assert bool(out["terminated"][ends].all())
    # reward only at the query step, +1 or -1
    assert set(np.unique(out["reward"][ends]).tolist()) <= {-1.0, 1.0}
    mask = np.ones(50, bool)
    mask[ends] = False
    assert not out["reward"][mask].any()


def test_observe_reward_appends_last_reward():
    env, params = envs.make("Pendulum-V", observe_reward=True)
    assert env.observation_space(params).shape == (2,)
    out = rollout(env, params, jax.random.key(2), 10)
    assert float(out["obs0"][-1]) == 0.0
    np.testing.assert_allclose(out["obs"][:, -1], out["reward"], rtol=1e-6)


def test_every_key_to_door_length_is_registered_with_its_episode_length():
    for n in (60, 120, 250, 500):
        env, params = envs.make(f"KeyToDoor-{n}")
        assert env.episode_length(params) == 15 + n + 10  # the release's phases
        assert env.action_space(params).n == 4


def _positions(obs, room):
    """(row, col) of each channel's marked cell and whether it is visible: [4, 2], [4]."""
    planes = obs.reshape(4, room * room)
    idx = jnp.argmax(planes, axis=1)
    return jnp.stack([idx // room, idx % room], axis=-1), planes.max(axis=1) > 0


def _toward(agent, target):
    d = target - agent
    return jnp.where(d[0] < 0, 0, jnp.where(d[0] > 0, 1, jnp.where(d[1] < 0, 2, 3)))


def _away(agent, target, room):
    moves = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
    nxt = jnp.clip(agent + moves, 0, room - 1)
    return jnp.argmax(jnp.abs(nxt - target).sum(-1))


def _key_to_door_policy(touch_key: bool, room: int = 5):
    def policy(k, obs, t):
        pos, visible = _positions(obs, room)
        agent, key, door = pos[0], pos[1], pos[3]
        to_key = _toward(agent, key) if touch_key else _away(agent, key, room)
        random = jax.random.randint(k, (), 0, 4)
        act = jnp.where(visible[1], to_key, jnp.where(visible[3], _toward(agent, door), random))
        return act.astype(jnp.int32)

    return policy


def _key_to_door_rollout(touch_key: bool, steps: int = 85, batch: int = 4):
    """KeyToDoor-60 under the scripted policy: per-step reward, done, terminated, truncated and
    `info["success"]`, [batch, steps] each."""
    env, params = envs.make("KeyToDoor-60")
    policy = _key_to_door_policy(touch_key)

    def body(carry, k):
        obs, state = carry
        k_act, k_step = jax.random.split(k)
        action = policy(k_act, obs, state.time)
        obs, state, reward, done, info = env.step(k_step, state, action, params)
        at_door = jnp.all(state.agent == state.door)
        out = dict(reward=reward, done=done, success=info["success"], at_door=at_door)
        out |= {k_: info[k_] for k_ in ("terminated", "truncated")}
        return (obs, state), out

    def one(key):
        k_reset, k_run = jax.random.split(key)
        _, out = jax.lax.scan(body, env.reset(k_reset, params), jax.random.split(k_run, steps))
        return out

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), batch))


@pytest.mark.parametrize("touch_key", [True, False])
def test_key_to_door_final_reward_needs_the_key(touch_key):
    """The scripted policy walks to the door, then steps off and back on it: with the key the door
    pays 5 once (an opened door pays nothing more); without it the door is a wall (the release's
    impassable DOOR) and pays nothing."""
    out = _key_to_door_rollout(touch_key)
    apple_phase_end = 15 + 60
    door_phase = np.asarray(out["at_door"][:, apple_phase_end:])
    assert door_phase.sum(axis=1).min() >= 2 if touch_key else not door_phase.any()
    for b in range(4):
        door_rewards = np.asarray(out["reward"][b, apple_phase_end:])
        assert float(door_rewards.sum()) == (5.0 if touch_key else 0.0)
        assert int(np.count_nonzero(door_rewards)) == (1 if touch_key else 0)
        assert not out["reward"][b, :15].any()  # apples only in the apple phase


@pytest.mark.parametrize("touch_key", [True, False])
def test_key_to_door_lasts_85_steps_and_ends_by_the_time_out(touch_key):
    """As in the release: opening the door does not end the episode; every episode lasts exactly
    15 + 60 + 10 steps and ends by a time-out (truncated, never terminated); `info["success"]` on
    its last step is whether the door was opened with the key."""
    out = _key_to_door_rollout(touch_key, steps=2 * 85)
    done, terminated, truncated = (np.asarray(out[k]) for k in ("done", "terminated", "truncated"))
    success = np.asarray(out["success"])
    for b in range(4):
        assert list(np.flatnonzero(done[b])) == [84, 169]
        assert not terminated[b].any()
        np.testing.assert_array_equal(truncated[b], done[b])
        assert bool(success[b, 84]) == touch_key and bool(success[b, 169]) == touch_key
        assert not success[b, :75].any()  # the door can open only in the door phase
        # success, once reached, holds to the episode's end (and restarts with the next episode)
        first = np.flatnonzero(success[b, :85])
        if touch_key:
            assert success[b, first[0] : 85].all() and not success[b, 85:160].any()


def test_key_to_door_apple_respawns_twenty_steps_after_it_is_eaten():
    """Walk onto an apple at t = 15 and step off and on again: it pays at t = 15, is back after the
    step at t = 15 + 20 + 1, so the next visit (t = 37) pays, and so on every 22 steps."""
    from resel.envs.key_to_door import KeyToDoorState

    env, params = envs.make("KeyToDoor-60")
    _, state = env.reset(jax.random.key(0), params)
    apples = jnp.zeros((5, 5), bool).at[0, 1].set(True)
    state = state.replace(agent=jnp.array([0, 0]), apples=apples, time=jnp.int32(15))
    assert isinstance(state, KeyToDoorState)
    step = jax.jit(lambda s, a: env.step_env(jax.random.key(1), s, a, params))
    paid = []
    for t in range(15, 75):
        _, state, reward, _, _ = step(state, jnp.int32(3 if t % 2 else 2))  # right, left, ...
        if float(reward):
            paid.append(t)
    assert paid == [15, 37, 59]


def test_wind_moves_the_robot_by_action_plus_hidden_wind():
    env, params = envs.make("Wind")
    winds = jnp.array([[0.05, -0.03], [-0.07, 0.02]], jnp.float32)
    batch = jax.vmap(lambda w: params.replace(winds=w[None]))(winds)
    actions = jax.random.uniform(jax.random.key(1), (10, 2), minval=-0.2, maxval=0.2)

    def run(p):
        return rollout(env, p, jax.random.key(0), 10, policy=lambda k, o, t: actions[t])

    out = jax.jit(jax.vmap(run))(batch)
    clipped = np.clip(np.asarray(actions), -0.1, 0.1)
    for i, w in enumerate(np.asarray(winds)):
        expected = np.cumsum(clipped + w, axis=0)
        np.testing.assert_allclose(out["obs"][i], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["obs"][0], out["obs"][1])


def test_wind_and_cheetah_velocity_tasks_come_from_fixed_sets_with_held_out_ones():
    """The release's sizes: Wind 40 training + 20 held-out winds, HalfCheetahVel 100 + 20 targets;
    resets draw only training tasks, and the held-out ones are what `heldout_params` gives."""
    from resel.envs import task_sets

    env, params = envs.make("Wind")
    train, test = task_sets.winds("train"), task_sets.winds("test")
    assert train.shape == (40, 2) and test.shape == (20, 2) and np.abs(train).max() <= 0.08
    np.testing.assert_array_equal(params.winds, train)
    np.testing.assert_array_equal(envs.heldout_params("Wind").winds, test)
    keys = jax.random.split(jax.random.key(0), 300)
    drawn = np.asarray(jax.vmap(lambda k: env.reset(k, params)[1].wind)(keys))
    assert {tuple(w) for w in drawn} <= {tuple(w) for w in train}
    assert len({tuple(w) for w in drawn}) > 30
    v_train, v_test = task_sets.velocity_targets("train"), task_sets.velocity_targets("test")
    assert v_train.shape == (100,) and v_test.shape == (20,) and 0 <= v_train.min() <= 3
    assert not set(v_train.tolist()) & set(v_test.tolist())


def test_task_splits_are_drawn_by_the_runs_seed_as_in_the_release():
    """Wind: the release's 60 winds (wind.py: RandomState(1337), one (x, y) pair per task, in
    order) whatever the seed, split 40 / 20 differently per seed; HalfCheetahVel's targets are
    drawn with the seed. `make(..., seed=)` and `heldout_params(name, seed)` follow it."""
    from resel.envs import task_sets

    rs = np.random.RandomState(1337)
    release = {(np.float32(rs.uniform(-0.08, 0.08)), np.float32(rs.uniform(-0.08, 0.08)))
               for _ in range(60)}  # fmt: skip
    for seed in (0, 1):
        assert {tuple(w) for w in task_sets.winds("all", seed)} == release
    a, b = task_sets.winds("train", 0), task_sets.winds("train", 1)
    assert {tuple(w) for w in a} != {tuple(w) for w in b}
    np.testing.assert_array_equal(envs.make("Wind", seed=1)[1].winds, b)
    np.testing.assert_array_equal(envs.heldout_params("Wind", 1).winds, task_sets.winds("test", 1))
    v0, v1 = task_sets.velocity_targets("all", 0), task_sets.velocity_targets("all", 1)
    assert not np.allclose(v0, v1) and min(v0.min(), v1.min()) >= 0


def test_wind_sparse_reward_near_the_goal():
    env, params = envs.make("Wind", wind=(0.04, -0.05))
    w, goal = np.array([0.04, -0.05]), np.array([0.0, 1.0])

    def oracle(k, obs, t):  # knows the wind: steer straight to the goal
        return jnp.clip(goal - obs - w, -0.1, 0.1)

    out = rollout(env, params, jax.random.key(0), 75, policy=oracle)
    dist = np.linalg.norm(np.asarray(out["final_obs"]) - goal, axis=-1)
    expected = np.where(dist <= 0.03, 1.0, 0.0)  # the release: 1 within the goal radius
    np.testing.assert_allclose(out["reward"], expected, atol=1e-5)
    assert out["reward"].sum() > 10  # reaches the goal and stays there
    np.testing.assert_array_equal(np.flatnonzero(out["done"]), [74])
    assert bool(out["truncated"][74]) and not out["terminated"].any()


@struct.dataclass
class _ToyParams:
    max_steps_in_episode: int = 5


@struct.dataclass
class _ToyState:
    time: jax.Array


class _Toy(Environment):
    """Toy task for `EpisodesPerTask`: observation [time], reward 1 a step, terminates on action 1."""

    @property
    def default_params(self):
        return _ToyParams()

    def reset_env(self, key, params):
        return jnp.zeros(1), _ToyState(jnp.int32(0))

    def restart(self, key, state):
        return _ToyState(jnp.int32(0))

    def step_env(self, key, state, action, params):
        state = _ToyState(state.time + 1)
        return state.time[None].astype(jnp.float32), state, 1.0, action == 1, {}

    def observation_space(self, params=None):
        return Box.make(0.0, np.inf, (1,))

    def action_space(self, params=None):
        return Discrete(2)


def _varibad_reference(actions, horizon: int, episodes: int) -> tuple[list, list, list]:
    """The release's `VariBadWrapper.step` over a gym `TimeLimit(horizon)` toy task, in plain
    Python: the meta-episode is done when the inner episode has ended `episodes` times (by
    termination or its own time limit); before that an ended inner episode restarts with the done
    flag 1. Returns per-step (done flag, meta done, terminated) up to the first meta-episode end."""
    elapsed, count, out = 0, 0, ([], [], [])
    for a in actions:
        elapsed += 1
        terminated = a == 1
        done_mdp = terminated or elapsed >= horizon
        count += done_mdp
        done_bamdp = count == episodes
        out[0].append(int(done_mdp and not done_bamdp))
        out[1].append(int(done_bamdp))
        out[2].append(int(done_bamdp and terminated))
        if done_mdp:
            elapsed = 0
        if done_bamdp:
            break
    return out


@pytest.mark.parametrize(
    "ends",
    [[], [1], [4], [0, 1], [1, 3], [2, 4], [0, 0]],
)
@pytest.mark.parametrize("episodes", [2, 3])
def test_episodes_per_task_gives_each_episode_its_horizon_as_the_release(ends, episodes):
    """Horizon 5: a first episode that terminates after 2 steps leaves the second its full 5
    steps (a 7-step meta-episode, the release's VariBAD wrapper), not the 8 left of 2 x 5.
    `ends[i]` is the step of the i-th inner episode at which the agent terminates it."""
    horizon = 5
    actions = []
    for e in range(episodes):  # terminate at step ends[e] of episode e, else run to the horizon
        stop = ends[e] if e < len(ends) else horizon
        actions += [int(t == stop) for t in range(min(stop + 1, horizon))]
    flags, done_ref, term_ref = _varibad_reference(actions, horizon, episodes)
    env = EpisodesPerTask(_Toy(), episodes)
    params = env.default_params
    assert params.max_steps_in_episode == horizon * episodes

    def body(state, a):
        obs, state, _, done, info = env.step(jax.random.key(0), state, a, params)
        return state, (obs[-1], done, info["terminated"], info["truncated"])

    _, state = env.reset(jax.random.key(0), params)
    flag, done, term, trunc = jax.lax.scan(body, state, jnp.asarray(actions))[1]
    n = len(done_ref)
    assert n == len(actions)  # the reference ends the meta-episode on the last action
    np.testing.assert_array_equal(flag, flags)
    np.testing.assert_array_equal(done, done_ref)
    np.testing.assert_array_equal(term, term_ref)
    # the last episode ends by its own time limit unless terminated: a truncation (bootstrap)
    np.testing.assert_array_equal(trunc, np.asarray(done_ref) & ~np.asarray(term_ref))
