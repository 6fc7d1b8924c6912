"""resel.envs on Brax: every Brax task traces under jit+vmap with the declared shapes; the -P/-V
split; gravity, direction and target-velocity tasks change dynamics or reward as stated.

Compiling a Brax program takes 5-20 s on this CPU, so the compiled rollouts are few and short;
shapes of every task are checked with `jax.eval_shape` (traced, not compiled).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resel import envs
from resel.envs import gravity
from tests.envs_rollout import rollout

BRAX_FAMILIES = ("locomotion", "gravity", "meta")
BRAX_TASKS = [
    n
    for n in envs.names()
    if envs.family_of(n) in BRAX_FAMILIES
    and n != "Wind"
    or n.split("-")[0] in ("Ant", "HalfCheetah", "Hopper", "Walker2d")
]


def test_brax_task_list_is_complete():
    for robot in ("Ant", "HalfCheetah", "Hopper", "Walker2d"):
        for suffix in ("", "-P", "-V", "-Gravity"):
            assert f"{robot}{suffix}" in BRAX_TASKS
    for name in ("Humanoid-Gravity", "AntDir", "CheetahDir", "HalfCheetahVel"):
        assert name in BRAX_TASKS


@pytest.mark.parametrize("name", BRAX_TASKS)
def test_traces_under_jit_and_vmap_with_declared_shapes(name):
    env, params = envs.make(name)
    obs_space, act_space = env.observation_space(params), env.action_space(params)
    keys = jax.random.split(jax.random.key(0), 2)
    obs, state = jax.eval_shape(jax.jit(jax.vmap(env.reset, in_axes=(0, None))), keys, params)
    assert obs.shape == (2, *obs_space.shape) and obs.dtype == obs_space.dtype
    actions = jnp.zeros((2, *act_space.shape), act_space.dtype)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs2, _, reward, done, info = jax.eval_shape(step, keys, state, actions, params)
    assert obs2.shape == obs.shape and obs2.dtype == jnp.float32
    assert reward.shape == (2,) and reward.dtype == jnp.float32
    assert done.dtype == info["terminated"].dtype == info["truncated"].dtype == jnp.bool_
    assert info["final_obs"].shape == obs.shape
    two_episodes = name in ("AntDir", "CheetahDir", "HalfCheetahVel")  # the release's BAMDPs
    assert env.episode_length(params) == (400 if two_episodes else 1000)
    assert env.hidden and env.family == envs.family_of(name)


@pytest.mark.parametrize("robot", ["Ant", "HalfCheetah", "Hopper", "Walker2d"])
def test_position_velocity_split(robot):
    """Perturbing a joint velocity changes only -V; perturbing a joint angle changes only -P."""
    env_p, _ = envs.make(f"{robot}-P")
    env_v, _ = envs.make(f"{robot}-V")
    brax_env = env_p.brax_env
    sys = brax_env.sys
    q0, qd0 = sys.init_q, jnp.zeros(sys.qd_size())

    @jax.jit
    def observe(q, qd):
        return brax_env._get_obs(brax_env.pipeline_init(q, qd))

    base = observe(q0, qd0)
    vel = observe(q0, qd0.at[-1].add(0.5))  # last joint's velocity
    pos = observe(q0.at[-1].add(0.2), qd0)  # last joint's angle (a hinge for every robot)
    p_idx, v_idx = env_p.indices, env_v.indices
    assert len(p_idx) + len(v_idx) == base.shape[0]
    np.testing.assert_array_equal(vel[p_idx], base[p_idx])
    assert not np.allclose(vel[v_idx], base[v_idx])
    np.testing.assert_array_equal(pos[v_idx], base[v_idx])
    assert not np.allclose(pos[p_idx], base[p_idx])


def test_gravity_task_set_is_fixed_and_split_100_20():
    scales = gravity.gravity_scales()
    assert scales.shape == (120,)  # the release's task set
    np.testing.assert_array_equal(scales, gravity.gravity_scales())  # same seed, same set
    assert scales.min() >= 1.5**-3 and scales.max() <= 1.5**3
    train, test = gravity.gravity_split("train"), gravity.gravity_split("test")
    assert train.shape == (100,) and test.shape == (20,)
    np.testing.assert_array_equal(np.concatenate([train, test]), scales)
    env, params = envs.make("Hopper-Gravity", split="test")
    np.testing.assert_array_equal(params.gravity_scales, test)
    with pytest.raises(ValueError, match="unknown task split 'val'"):
        envs.make("Hopper-Gravity", split="val")
    with pytest.raises(ValueError, match="task_index 20 out of range"):
        envs.make("Hopper-Gravity", split="test", task_index=20)


def test_humanoid_gravity_range_is_narrower_as_in_the_release():
    """The release's log_scale_limit: 1.5**U(-2, 2) for Humanoid (envs/meta/__init__.py), 3
    otherwise; the draws are the same uniforms scaled, so the exponents are in ratio 2 / 3."""
    hum = envs.make("Humanoid-Gravity", split="all")[1].gravity_scales
    other = envs.make("Hopper-Gravity", split="all")[1].gravity_scales
    assert hum.min() >= 1.5**-2 and hum.max() <= 1.5**2
    assert other.min() < 1.5**-2 and other.max() > 1.5**2
    np.testing.assert_allclose(np.log(hum) / np.log(other), 2 / 3, rtol=1e-4)


def test_two_gravities_give_different_trajectories_and_episodes_end_by_convention():
    """Hopper-Gravity, 45 steps of the same actions under the lightest and heaviest gravity."""
    env, params = envs.make("Hopper-Gravity", episode_length=40)
    train = gravity.gravity_split("train")
    picks = jnp.asarray([train.min(), train.max()])
    batch = jax.vmap(lambda g: params.replace(gravity_scales=g[None]))(picks)
    actions = jax.random.uniform(jax.random.key(7), (45, 3), minval=-1.0, maxval=1.0)

    def run(p, key):
        return rollout(env, p, key, 45, policy=lambda k, o, t: actions[t])

    f = jax.jit(jax.vmap(run, in_axes=(0, None)))
    out, again = f(batch, jax.random.key(0)), f(batch, jax.random.key(0))

    np.testing.assert_array_equal(out["obs"], again["obs"])  # deterministic for a key
    np.testing.assert_array_equal(out["obs0"][0], out["obs0"][1])  # same start
    assert not np.allclose(out["obs"][0, :5], out["obs"][1, :5], atol=1e-3)

    np.testing.assert_array_equal(out["done"], out["terminated"] | out["truncated"])
    assert not bool(jnp.any(out["terminated"] & out["truncated"]))
    assert int(out["ep_len"].max()) <= 40
    np.testing.assert_array_equal(out["truncated"], (out["ep_len"] == 40) & ~out["terminated"])
    assert bool(jnp.all(out["time"][out["done"]] == 0))


def test_cheetah_direction_and_velocity_rewards_by_hand():
    """CheetahDir under d = +1 and d = -1 with the same actions (one compiled program): the motion
    is the same, the rewards are d * v_x - 0.05 |a|^2 with v_x measured from the torso position;
    HalfCheetahVel's reward on the same states is -|v_x - v*| - 0.05 |a|^2."""
    env, params = envs.make("CheetahDir", episode_length=20, episodes_per_task=1)
    vel_env, _ = envs.make("HalfCheetahVel")
    both = jax.vmap(lambda d: params.replace(directions=d[None]))(jnp.array([1.0, -1.0]))
    actions = jax.random.uniform(jax.random.key(3), (25, 6), minval=-1.0, maxval=1.0)
    dt = float(env.brax_env.dt)

    def run(p):
        def body(state, a):
            x0 = state.brax.pipeline_state.x.pos[0, 0]
            obs, new, reward, done, info = env.step(jax.random.key(0), state, a, p)
            # measured on the new state: meaningless on the time-out step (already reset)
            vx = (new.brax.pipeline_state.x.pos[0, 0] - x0) / dt
            vel_reward = vel_env.reward(new.brax, a, jnp.float32(1.5))
            return new, (obs, reward, done, info["truncated"], vx, info["task"], vel_reward)

        _, state = env.reset(jax.random.key(1), p)
        return jax.lax.scan(body, state, actions)[1]

    obs, reward, done, truncated, vx, task, vel_reward = jax.jit(jax.vmap(run))(both)
    np.testing.assert_array_equal(obs[0], obs[1])  # the direction does not change the motion
    np.testing.assert_array_equal(task[:, 0], [1.0, -1.0])
    ctrl = 0.05 * np.sum(np.square(np.asarray(actions)), axis=-1)
    ok = ~np.asarray(done[0])
    close = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reward[0][ok], (vx[0] - ctrl)[ok], **close)
    np.testing.assert_allclose(reward[1][ok], (-vx[1] - ctrl)[ok], **close)
    np.testing.assert_allclose(vel_reward[0][ok], (-np.abs(vx[0] - 1.5) - ctrl)[ok], **close)
    assert np.abs(vx[0]).max() > 0.1  # it really moved
    # HalfCheetah never terminates: exactly one time-out, after 20 steps
    np.testing.assert_array_equal(np.flatnonzero(done[0]), [19])
    assert bool(truncated[0, 19])


def test_ant_direction_reward_by_hand():
    """AntDir under g = +1 and g = -1 rad with the same actions: the motion is the same and the
    reward is v_x cos g + v_y sin g + 1 (healthy) - 0.5 |a|^2, with v from the torso position."""
    env, params = envs.make("AntDir", episode_length=20, episodes_per_task=1)
    both = jax.vmap(lambda d: params.replace(directions=d[None]))(jnp.array([1.0, -1.0]))
    actions = jax.random.uniform(jax.random.key(4), (12, 8), minval=-1.0, maxval=1.0)
    dt = float(env.brax_env.dt)

    def run(p):
        def body(state, a):
            xy0 = state.brax.pipeline_state.x.pos[0, :2]
            obs, new, reward, done, _ = env.step(jax.random.key(0), state, a, p)
            return new, (obs, reward, done, (new.brax.pipeline_state.x.pos[0, :2] - xy0) / dt)

        _, state = env.reset(jax.random.key(1), p)
        return jax.lax.scan(body, state, actions)[1]

    obs, reward, done, v = (np.asarray(x, np.float64) for x in jax.jit(jax.vmap(run))(both))
    np.testing.assert_array_equal(obs[0], obs[1])  # the angle does not change the motion
    ok = done[0] == 0
    base = 1.0 - 0.5 * np.sum(np.square(np.asarray(actions, np.float64)), axis=-1)
    for i, g in enumerate((1.0, -1.0)):
        ref = v[i, :, 0] * np.cos(g) + v[i, :, 1] * np.sin(g) + base
        np.testing.assert_allclose(reward[i][ok], ref[ok], rtol=1e-4, atol=1e-4)
    assert ok.sum() >= 5 and np.abs(v[0, ok, 1]).max() > 0.01  # it moved sideways too


def test_velocity_targets_are_drawn_from_the_params_range():
    from resel.envs import task_sets

    env, params = envs.make("HalfCheetahVel")
    keys = jax.random.split(jax.random.key(0), 2000)
    v = np.asarray(jax.vmap(lambda k: env.sample_task(k, params))(keys))
    assert set(v.tolist()) == set(task_sets.velocity_targets("train").tolist())  # the 100 targets
    np.testing.assert_array_equal(
        envs.heldout_params("HalfCheetahVel").velocities, task_sets.velocity_targets("test")
    )
    _, fixed = envs.make("HalfCheetahVel", target_velocity=2.0)
    assert float(env.sample_task(keys[0], fixed)) == pytest.approx(2.0)
    _, left = envs.make("AntDir", direction=-1)
    np.testing.assert_array_equal(left.directions, [-1.0])


def test_two_episodes_per_task_with_the_done_flag():
    """CheetahDir as the release runs it: two 3-step episodes of one direction are one 6-step
    meta-episode. The first episode is the plain task's (same observations), the flag is 1 only
    on its last step, then the robot restarts (time 0, near the origin) with the same task, and
    only the meta-episode's end is a `done`."""
    env, params = envs.make("CheetahDir", episode_length=3)
    plain, plain_params = envs.make("CheetahDir", episode_length=3, episodes_per_task=1)
    assert env.episode_length(params) == 6
    assert env.observation_space(params).shape[0] == plain.observation_space().shape[0] + 1
    actions = jax.random.uniform(jax.random.key(3), (7, 6), minval=-1.0, maxval=1.0)

    def run(env, params):
        def body(state, a):
            obs, state, reward, done, info = env.step(jax.random.key(9), state, a, params)
            return state, (obs, done, info["task"], state, info["final_obs"])

        obs0, state = env.reset(jax.random.key(1), params)
        return obs0, jax.lax.scan(body, state, actions)[1]

    obs0, (obs, done, task, states, _) = jax.jit(run, static_argnums=0)(env, params)
    plain0, (*_, plain_last) = jax.jit(run, static_argnums=0)(plain, plain_params)
    np.testing.assert_array_equal(obs0[:-1], plain0)
    # the plain task's observations before its auto-reset (final_obs) are the first episode's
    np.testing.assert_allclose(obs[:3, :-1], plain_last[:3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(obs[:, -1], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(done, [0, 0, 0, 0, 0, 1, 0])
    assert len(set(np.asarray(task[:6]).tolist())) == 1  # one task for both episodes
    inner = states.inner
    np.testing.assert_array_equal(inner.time[:6], [1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(states.episode[:6], [0, 0, 1, 1, 1, 0])
    speed = np.abs(np.asarray(inner.brax.pipeline_state.qd)).max(axis=1)
    assert speed[2] < 0.5 < speed[1]  # restarted at rest (reset noise), moving before
