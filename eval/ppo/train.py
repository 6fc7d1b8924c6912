"""PPO for Brax with any optax optimizer, PureJaxRL style: `make_train(config, optimizer)(key)`.

Brax's `ppo.train` hard-codes Adam; here the optimizer is an argument, so a learned optimizer
(`optim4rl.optim4rl(3e-4, meta_params)`), AdamW, RMSProp or a per-module `optax.partition` over
the parameter tree `{"policy": ..., "value": ...}` all plug in unchanged. Networks, observation
normalisation (running mean/std, Welford) and the tanh-Gaussian policy are Brax's own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax import envs
from brax.envs.wrappers import training as brax_wrappers
from brax.training import types as brax_types
from brax.training.acme import running_statistics, specs
from brax.training.agents.ppo import networks as ppo_networks

from eval.ppo.config import PPOConfig
from eval.ppo.losses import ppo_loss
from optim4rl.runtime.agent import Agent, KeySchedule

ProgressFn = Callable[[jax.Array, dict[str, jax.Array]], None]


class TrainState(NamedTuple):
    params: dict[str, Any]
    opt_state: optax.OptState
    normalizer_params: Any
    env_steps: jax.Array


def _raw_keys(key: jax.Array, n: int) -> jax.Array:
    """n raw uint32 keys [n, 2] (Brax's wrappers read the batch shape off `rng.shape[:-1]`)."""
    keys = jax.random.split(key, n)
    return jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys


def _strong(tree: Any) -> Any:
    """Drop weak types (Brax's wrappers make some), so a jitted epoch fed its own output does
    not recompile."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.result_type(x)), tree)


def make_env(config: PPOConfig) -> envs.Env:
    """The Brax environment named by `config.env` (unknown names get a clear error)."""
    if config.env not in envs._envs:  # noqa: SLF001 - brax keeps its registry private
        known = ", ".join(sorted(envs._envs))  # noqa: SLF001
        raise ValueError(f"unknown Brax env {config.env!r}; available: {known}")
    return envs.get_environment(config.env, backend=config.backend)


def make_networks(config: PPOConfig, env: envs.Env) -> ppo_networks.PPONetworks:
    """Brax's PPO networks (swish MLPs, tanh-normal policy) with optional observation normalisation."""
    preprocess = (
        running_statistics.normalize
        if config.normalize_observations
        else brax_types.identity_observation_preprocessor
    )
    return ppo_networks.make_ppo_networks(
        env.observation_size,
        env.action_size,
        preprocess_observations_fn=preprocess,
        policy_hidden_layer_sizes=config.policy_hidden_layer_sizes,
        value_hidden_layer_sizes=config.value_hidden_layer_sizes,
    )


class PPO(NamedTuple):
    """The pure pieces of PPO; `make_train` composes them, a runner may drive them from Python.

    init(key) -> (TrainState, env_state); train_epoch(ts, env_state, key) -> (ts, env_state,
    metrics); evaluate(ts, key) -> mean deterministic return (scalar).
    """

    init: Callable[[jax.Array], tuple[TrainState, Any]]
    train_epoch: Callable[..., tuple[TrainState, Any, dict[str, jax.Array]]]
    evaluate: Callable[[TrainState, jax.Array], jax.Array]
    networks: ppo_networks.PPONetworks


def make_ppo(config: PPOConfig, optimizer: optax.GradientTransformation) -> PPO:
    """PPO's init / train_epoch / evaluate for `config`, updating parameters with `optimizer`."""
    env = make_env(config)
    train_env = brax_wrappers.wrap(
        env, episode_length=config.episode_length, action_repeat=config.action_repeat
    )
    eval_env = brax_wrappers.VmapWrapper(
        brax_wrappers.EpisodeWrapper(env, config.episode_length, config.action_repeat)
    )
    networks = make_networks(config, env)
    dist = networks.parametric_action_distribution
    policy_apply = networks.policy_network.apply
    unrolls_per_step = config.batch_size * config.num_minibatches // config.num_envs
    loss_and_grad = jax.value_and_grad(
        functools.partial(ppo_loss, networks=networks, config=config), has_aux=True
    )

    def unroll(params, normalizer_params, env_state, key):
        """`unroll_length` steps of all envs; returns data with leaves [num_envs, T, ...]."""

        def step(state, key):
            logits = policy_apply(normalizer_params, params["policy"], state.obs)
            raw_action = dist.sample_no_postprocessing(logits, key)
            log_prob = dist.log_prob(logits, raw_action)
            next_state = train_env.step(state, dist.postprocess(raw_action))
            info = next_state.info
            transition = {
                "obs": state.obs,
                "next_obs": next_state.obs,
                "raw_action": raw_action,
                "log_prob": log_prob,
                "reward": next_state.reward,
                "done": next_state.done,
                "truncation": info["truncation"],
                "episode_done": info["episode_done"],
                "episode_return": info["episode_metrics"]["sum_reward"],
            }
            return next_state, transition

        keys = jax.random.split(key, config.unroll_length)
        env_state, data = jax.lax.scan(step, env_state, keys)
        return env_state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), data)

    def sgd_pass(carry, key, data, normalizer_params):
        """One shuffled pass over the batch in `num_minibatches` optimizer updates."""
        params, opt_state = carry
        key_perm, key_loss = jax.random.split(key)
        perm = jax.random.permutation(key_perm, data["obs"].shape[0])
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:]), data
        )

        def minibatch_step(carry, inputs):
            params, opt_state = carry
            batch, key = inputs
            (_, metrics), grads = loss_and_grad(params, normalizer_params, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), metrics

        keys = jax.random.split(key_loss, config.num_minibatches)
        (params, opt_state), metrics = jax.lax.scan(
            minibatch_step, (params, opt_state), (minibatches, keys)
        )
        return (params, opt_state), metrics

    def training_step(carry, key):
        ts, env_state = carry
        key_unroll, key_sgd = jax.random.split(key)

        def collect(env_state, key):
            return unroll(ts.params, ts.normalizer_params, env_state, key)

        env_state, data = jax.lax.scan(
            collect, env_state, jax.random.split(key_unroll, unrolls_per_step)
        )
        # [unrolls, envs, T, ...] -> [unrolls * envs, T, ...]
        data = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)
        normalizer_params = ts.normalizer_params
        if config.normalize_observations:
            normalizer_params = running_statistics.update(normalizer_params, data["obs"])
        episode_stats = (
            jnp.sum(data["episode_done"] * data["episode_return"]),
            jnp.sum(data["episode_done"]),
        )
        train_data = {k: v for k, v in data.items() if not k.startswith("episode_")}
        (params, opt_state), metrics = jax.lax.scan(
            functools.partial(sgd_pass, data=train_data, normalizer_params=normalizer_params),
            (ts.params, ts.opt_state),
            jax.random.split(key_sgd, config.num_updates_per_batch),
        )
        ts = TrainState(
            params, opt_state, normalizer_params, ts.env_steps + config.env_steps_per_training_step
        )
        return (ts, env_state), (jax.tree.map(jnp.mean, metrics), episode_stats)

    def evaluate(ts: TrainState, key: jax.Array) -> jax.Array:
        """Mean undiscounted return of the deterministic policy (tanh of the mean), one episode."""
        state = eval_env.reset(_raw_keys(key, config.num_eval_envs))

        def step(carry, _):
            state, total, alive = carry
            logits = policy_apply(ts.normalizer_params, ts.params["policy"], state.obs)
            state = eval_env.step(state, dist.mode(logits))
            total = total + jnp.where(alive, state.reward, 0.0)
            alive = alive & (state.done == 0)
            return (state, total, alive), None

        init = (state, jnp.zeros(config.num_eval_envs), jnp.ones(config.num_eval_envs, bool))
        steps = -(-config.episode_length // config.action_repeat)
        (_, total, _), _ = jax.lax.scan(step, init, None, length=steps)
        return jnp.mean(total)

    def all_finite(tree) -> jax.Array:
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))

    def init(key: jax.Array) -> tuple[TrainState, Any]:
        """Fresh agent, optimizer state, normaliser and `num_envs` reset environments."""
        key_env, key_policy, key_value = jax.random.split(key, 3)
        env_state = train_env.reset(_raw_keys(key_env, config.num_envs))
        params = {
            "policy": networks.policy_network.init(key_policy),
            "value": networks.value_network.init(key_value),
        }
        obs_spec = specs.Array((env.observation_size,), jnp.dtype("float32"))
        ts = TrainState(
            params=params,
            opt_state=optimizer.init(params),
            normalizer_params=running_statistics.init_state(obs_spec),
            env_steps=jnp.zeros((), jnp.float32),
        )
        return _strong(ts), _strong(env_state)

    def train_epoch(
        ts: TrainState, env_state: Any, key: jax.Array
    ) -> tuple[TrainState, Any, dict[str, jax.Array]]:
        """`training_steps_per_epoch` training steps; metrics are epoch means (scalars)."""
        (ts, env_state), (loss_metrics, (ret_sum, ret_count)) = jax.lax.scan(
            training_step,
            (ts, env_state),
            jax.random.split(key, config.training_steps_per_epoch),
        )
        metrics = jax.tree.map(jnp.mean, loss_metrics)
        metrics["train_return"] = jnp.where(
            ret_count.sum() > 0, ret_sum.sum() / jnp.maximum(ret_count.sum(), 1), jnp.nan
        )
        metrics["finite"] = all_finite(loss_metrics) & all_finite(ts.params)
        return _strong(ts), _strong(env_state), metrics

    return PPO(init=init, train_epoch=train_epoch, evaluate=evaluate, networks=networks)


LOSS_KEYS = ("total_loss", "policy_loss", "value_loss", "entropy_loss")


def make_train(
    config: PPOConfig,
    optimizer: optax.GradientTransformation,
    *,
    progress: ProgressFn | None = None,
) -> Callable[[jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """Build `train(key) -> (final_state, metrics)`, pure and jittable (vmap it over seeds).

    metrics leaves have shape [num_evals]: evaluation i runs after i * training_steps_per_epoch
    training steps ("env_steps"); "eval_return" is the deterministic policy's mean undiscounted
    return over `num_eval_envs` episodes; "train_return" the mean return of the training episodes
    that ended during the epoch (NaN if none did); losses are epoch means (NaN at evaluation 0);
    "finite" is False once any parameter or loss is NaN/inf. `progress(eval_index, metrics)` is
    called from the device via `jax.debug.callback` after each evaluation (once per seed under vmap).
    """
    ppo = make_ppo(config, optimizer)

    def report(index, ts, key, metrics):
        metrics = {"env_steps": ts.env_steps, "eval_return": ppo.evaluate(ts, key), **metrics}
        if progress is not None:
            jax.debug.callback(progress, index, metrics)
        return metrics

    def epoch(carry, inputs):
        ts, env_state, finite = carry
        index, key = inputs
        key_train, key_eval = jax.random.split(key)
        ts, env_state, metrics = ppo.train_epoch(ts, env_state, key_train)
        finite = finite & metrics["finite"]
        metrics = report(index, ts, key_eval, {**metrics, "finite": finite})
        return (ts, env_state, finite), metrics

    def train(key: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        key_init, key_eval, key_epochs = jax.random.split(key, 3)
        ts, env_state = ppo.init(key_init)
        first = {k: jnp.full((), jnp.nan) for k in (*LOSS_KEYS, "train_return")}
        first = report(0, ts, key_eval, {**first, "finite": jnp.array(True)})
        epochs = max(config.num_evals - 1, 1)
        (ts, _, _), rest = jax.lax.scan(
            epoch,
            (ts, env_state, jnp.array(True)),
            (jnp.arange(1, epochs + 1), jax.random.split(key_epochs, epochs)),
        )
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
        return ts, metrics

    return train


def _epoch_keys(config: PPOConfig, seed_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`make_train`'s key stream: (evaluation key at the start, epoch keys [epochs, 2])."""
    _, key_eval, key_epochs = jax.random.split(seed_key, 3)
    epochs = max(config.num_evals - 1, 1)
    return key_eval, jax.vmap(jax.random.split)(jax.random.split(key_epochs, epochs))


def make_agent(config: PPOConfig, optimizer: optax.GradientTransformation) -> Agent:
    """PPO under the one agent contract (`optim4rl.runtime.agent`), with `make_train`'s keys, so
    a run of the driver reproduces `train(jax.random.key(seed))` evaluation for evaluation."""
    ppo = make_ppo(config, optimizer)
    epochs = max(config.num_evals - 1, 1)
    seed_keys = lambda seeds: jax.vmap(jax.random.key)(np.asarray(seeds))  # noqa: E731

    def chunk_keys(seeds, c):
        return jax.vmap(lambda k: _epoch_keys(config, k)[1][c, 0])(seed_keys(seeds))

    def eval_keys(seeds, c, step):
        del step
        pick = (
            (lambda k: _epoch_keys(config, k)[0])
            if c == 0
            else (lambda k: _epoch_keys(config, k)[1][c - 1, 1])
        )
        return jax.vmap(pick)(seed_keys(seeds))

    def train_chunk(state, key):
        ts, env_state, metrics = ppo.train_epoch(*state, key)
        return (ts, env_state), metrics

    return Agent(
        name="ppo",
        init=ppo.init,
        train_chunk=train_chunk,
        steps=lambda state: state[0].env_steps,
        total_steps=epochs * config.training_steps_per_epoch * config.env_steps_per_training_step,
        evaluate=lambda state, key: {"return": ppo.evaluate(state[0], key)},
        keys=KeySchedule(
            init=lambda seeds: jax.vmap(lambda k: jax.random.split(k, 3)[0])(seed_keys(seeds)),
            chunk=chunk_keys,
            evaluate=eval_keys,
        ),
        evaluate_at_start=True,
        num_chunks=epochs,
        updates_per_chunk=config.training_steps_per_epoch
        * config.num_minibatches
        * config.num_updates_per_batch,
    )
