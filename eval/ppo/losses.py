"""PPO losses: generalised advantage estimation with Brax's truncation handling, clipped surrogate."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def gae(
    truncation: jax.Array,
    termination: jax.Array,
    rewards: jax.Array,
    values: jax.Array,
    bootstrap_value: jax.Array,
    *,
    discount: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Value targets v_s and advantages, all [T, B] (bootstrap_value [B]).

    delta_t = (r_t + gamma (1 - term_t) V_{t+1} - V_t) (1 - trunc_t)
    v_t - V_t = delta_t + gamma lambda (1 - term_t)(1 - trunc_t) (v_{t+1} - V_{t+1})
    A_t = (r_t + gamma (1 - term_t) v_{t+1} - V_t) (1 - trunc_t)
    Truncated steps (time limit) are masked out, as in Brax's PPO.
    """
    keep = 1.0 - truncation
    next_values = jnp.concatenate([values[1:], bootstrap_value[None]], axis=0)
    continues = discount * (1.0 - termination)
    deltas = (rewards + continues * next_values - values) * keep

    def backward(acc, xs):
        delta, cont, k = xs
        acc = delta + cont * k * lam * acc
        return acc, acc

    _, vs_minus_v = jax.lax.scan(
        backward, jnp.zeros_like(bootstrap_value), (deltas, continues, keep), reverse=True
    )
    vs = vs_minus_v + values
    next_vs = jnp.concatenate([vs[1:], bootstrap_value[None]], axis=0)
    advantages = (rewards + continues * next_vs - values) * keep
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(advantages)


def ppo_loss(
    params: dict[str, Any],
    normalizer_params: Any,
    data: dict[str, jax.Array],
    key: jax.Array,
    *,
    networks: Any,
    config: Any,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped-surrogate PPO loss on a minibatch of unrolls, data leaves [B, T, ...].

    L = -E[min(rho A, clip(rho, 1-eps, 1+eps) A)] + c_v / 2 E[(v_s - V)^2] - c_H E[H(pi)]
    with rho = pi(a|s) / mu(a|s) from the stored pre-tanh actions; returns (loss, metrics).
    """
    data = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), data)  # time first: [T, B, ...]
    policy_apply = networks.policy_network.apply
    value_apply = networks.value_network.apply
    dist = networks.parametric_action_distribution

    logits = policy_apply(normalizer_params, params["policy"], data["obs"])
    values = value_apply(normalizer_params, params["value"], data["obs"])
    bootstrap = value_apply(normalizer_params, params["value"], data["next_obs"][-1])

    truncation = data["truncation"]
    termination = data["done"] * (1.0 - truncation)
    vs, advantages = gae(
        truncation,
        termination,
        data["reward"] * config.reward_scaling,
        values,
        bootstrap,
        discount=config.discounting,
        lam=config.gae_lambda,
    )
    if config.normalize_advantage:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    log_prob = dist.log_prob(logits, data["raw_action"])
    rho = jnp.exp(log_prob - data["log_prob"])
    eps = config.clipping_epsilon
    policy_loss = -jnp.mean(
        jnp.minimum(rho * advantages, jnp.clip(rho, 1 - eps, 1 + eps) * advantages)
    )
    value_loss = 0.5 * config.vf_loss_coefficient * jnp.mean((vs - values) ** 2)
    entropy = jnp.mean(dist.entropy(logits, key))
    entropy_loss = -config.entropy_cost * entropy
    total = policy_loss + value_loss + entropy_loss
    return total, {
        "total_loss": total,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy_loss": entropy_loss,
    }
