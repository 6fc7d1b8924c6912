"""Brax PPO with any optax transform: GAE against references, learning on a real task, per-module
optimizers, config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from brax.training.agents.ppo.losses import compute_gae

from eval.ppo import PPOConfig, gae, make_ppo, make_train, preset


def _gae_loop(trunc, term, rewards, values, bootstrap, gamma, lam):
    """Sequential numpy reference, one environment at a time, written from the recursion."""
    T, B = rewards.shape
    vs = np.zeros((T, B))
    adv = np.zeros((T, B))
    for b in range(B):
        acc = 0.0
        for t in reversed(range(T)):
            nv = values[t + 1, b] if t + 1 < T else bootstrap[b]
            cont = gamma * (1 - term[t, b])
            delta = (rewards[t, b] + cont * nv - values[t, b]) * (1 - trunc[t, b])
            acc = delta + cont * (1 - trunc[t, b]) * lam * acc
            vs[t, b] = acc + values[t, b]
        for t in range(T):
            nvs = vs[t + 1, b] if t + 1 < T else bootstrap[b]
            cont = gamma * (1 - term[t, b])
            adv[t, b] = (rewards[t, b] + cont * nvs - values[t, b]) * (1 - trunc[t, b])
    return vs, adv


def test_gae_matches_sequential_loop_and_brax():
    rng = np.random.default_rng(0)
    T, B = 7, 5
    trunc = (rng.random((T, B)) < 0.15).astype(np.float32)
    term = ((rng.random((T, B)) < 0.2) * (1 - trunc)).astype(np.float32)
    rewards = rng.normal(size=(T, B)).astype(np.float32)
    values = rng.normal(size=(T, B)).astype(np.float32)
    bootstrap = rng.normal(size=B).astype(np.float32)
    vs, adv = gae(trunc, term, rewards, values, bootstrap, discount=0.97, lam=0.95)
    ref_vs, ref_adv = _gae_loop(trunc, term, rewards, values, bootstrap, 0.97, 0.95)
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    brax_vs, brax_adv = compute_gae(
        trunc, term, rewards, values, bootstrap, lambda_=0.95, discount=0.97
    )
    np.testing.assert_allclose(vs, brax_vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv, brax_adv, rtol=1e-5, atol=1e-5)


def test_ppo_learns_inverted_pendulum():
    """Two seeds vmapped; a random policy's episodes last ~15-25 steps (return = steps alive)."""
    config = preset("cpu", num_timesteps=400_000, num_evals=5)
    train = jax.jit(jax.vmap(make_train(config, optax.adam(3e-4))))
    _, metrics = train(jax.random.split(jax.random.key(1), 2))
    train_return = np.asarray(metrics["train_return"])  # [seeds, evals]
    assert np.all(np.asarray(metrics["finite"]))
    assert np.isnan(train_return[:, 0]).all()  # no training before the first evaluation
    first, last = train_return[:, 1], train_return[:, -1]
    assert first.max() < 40, first
    assert np.all(last > 3 * first) and last.mean() > 80, (first, last)
    steps = np.asarray(metrics["env_steps"][0])
    np.testing.assert_array_equal(steps, np.arange(5) * config.training_steps_per_epoch * 2560)


def test_per_module_optimizer_moves_only_its_module():
    """optax.multi_transform over {"policy", "value"}: a frozen value net stays bit-identical."""
    config = preset(
        "cpu",
        num_timesteps=2560,
        num_evals=2,
        num_envs=8,
        batch_size=8,
        num_minibatches=2,
        num_updates_per_batch=1,
        num_eval_envs=2,
        episode_length=20,
        value_hidden_layer_sizes=(8,),
        policy_hidden_layer_sizes=(8,),
    )
    optimizer = optax.multi_transform(
        {"move": optax.adam(1e-2), "frozen": optax.set_to_zero()},
        {"policy": "move", "value": "frozen"},
    )
    ppo = make_ppo(config, optimizer)
    ts0, env_state = ppo.init(jax.random.key(0))
    ts1, _, metrics = jax.jit(ppo.train_epoch)(ts0, env_state, jax.random.key(1))
    assert bool(metrics["finite"])
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), ts0.params, ts1.params)
    assert all(jax.tree.leaves(same["value"]))
    assert not any(jax.tree.leaves(same["policy"]))
    assert (
        float(ts1.env_steps) == config.training_steps_per_epoch * config.env_steps_per_training_step
    )


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown PPO preset 'gpu'"):
        preset("gpu")
    with pytest.raises(ValueError, match="learning_rate"):
        preset("cpu", learning_rate=1e-3)
    with pytest.raises(ValueError, match="multiple of num_envs"):
        PPOConfig(num_envs=100, batch_size=10, num_minibatches=3)
    with pytest.raises(ValueError, match="unknown Brax env 'antt'"):
        make_ppo(preset("cpu", env="antt"), optax.adam(1e-3))
