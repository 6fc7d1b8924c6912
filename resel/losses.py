"""SAC + REDQ losses on batches of whole trajectories (App. C), as masked means over real steps.

With Q'_e the target ensemble, pi the online policy and m the transition mask:

    a'_{t+1}, logp_{t+1} ~ pi(. | history up to o_{t+1})
    v_{t+1} = min_{e in 2 random heads} Q'_e(o_{t+1}, a'_{t+1}) - alpha logp_{t+1}
    y_t = r_t + gamma (1 - terminated_t) clip(v_{t+1}, lo, hi)
    L_Q = sum_e  sum_t m_t (Q_e(o_t, a_t) - y_t)^2 / sum_t m_t
    L_pi = sum_t m_t (alpha logp_t - mean_e Q_e(o_t, a_t ~ pi)) / sum_t m_t    (critic embedding detached)
    L_alpha = -log_alpha * sum_t m_t (logp_t + target_entropy) / sum_t m_t

[lo, hi] is the release's Q-value guard: a running range of past targets (`guard_update`), so a
diverging target network cannot feed values outside what the targets have been; (+inf, -inf)
before the first update means no clamp.
Discrete actions: expectations over pi(.|history) replace the sampled action (alpha is fixed).
Time-outs are not ends: only `terminated` stops bootstrapping. The next step t+1 of a transition is
the next position of the same row (the buffer stores each trajectory's final observation after it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from resel.buffer import Batch
from resel.networks import Critic, Policy, tanh_gaussian_sample


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """sum(x * mask) / sum(mask) (0 when the mask is empty)."""
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _next(x: jax.Array) -> jax.Array:
    """Value at t+1 along the row (batch, T, ...) -> (batch, T, ...); the last position gets 0."""
    return jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)


NO_BOUNDS = (float("inf"), float("-inf"))


def clamp_to_bounds(v: jax.Array, bounds: jax.Array) -> jax.Array:
    """clip(v, lo, hi) with bounds = [lo, hi]; unchanged while lo > hi (no target seen yet)."""
    lo, hi = bounds[0], bounds[1]
    return jnp.where(lo <= hi, jnp.clip(v, lo, hi), v)


def guard_update(bounds: jax.Array, y: jax.Array, mask: jax.Array, decay: float) -> jax.Array:
    """The release's running target range: with m = min(y * mask), M = max(y * mask),
    lo <- d min(lo, m) + (1 - d) m and hi <- d max(hi, M) + (1 - d) M (padding counts as 0, as in
    the release, which takes the range of target * mask)."""
    y = jax.lax.stop_gradient(y * mask)
    m, big = jnp.min(y), jnp.max(y)
    lo = decay * jnp.minimum(bounds[0], m) + (1.0 - decay) * m
    hi = decay * jnp.maximum(bounds[1], big) + (1.0 - decay) * big
    return jnp.stack([lo, hi])


def td_targets(
    policy_params: Any,
    target_params: Any,
    log_alpha: jax.Array,
    batch: Batch,
    key: jax.Array,
    *,
    policy: Policy,
    critic: Critic,
    gamma: float,
    bounds: jax.Array | None = None,
    policy_out: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """y_t (batch, T): r_t + gamma (1 - terminated_t) clip(min of 2 random target heads
    - alpha logp, bounds) at the next step; no gradient. `bounds=None`: no clamp.
    `policy_out`: the policy's (mean, log_std) on `batch.seq` if already computed (then
    `policy_params` is not used)."""
    k_pi, k_heads = jax.random.split(key)
    seq = batch.seq
    mean, log_std = policy.apply(policy_params, seq) if policy_out is None else policy_out
    t_emb = critic.apply(target_params, seq, method=critic.embed)
    heads = jax.random.choice(k_heads, critic.cfg.n_critics, (2,), replace=False)
    # only the 2 drawn heads of the target ensemble are computed
    if policy.discrete:  # exact expectation over the actions: sum_a pi(a) (min Q'(a) - alpha logpi)
        logpi = jax.nn.log_softmax(mean)
        q_t = critic.apply(target_params, seq.obs, t_emb, heads, method=critic.q_all)  # (B,T,2,A)
        soft = jnp.min(q_t, axis=-2) - jnp.exp(log_alpha) * logpi
        v = jnp.sum(jnp.exp(logpi) * soft, axis=-1)
    else:
        a_pi, logp = tanh_gaussian_sample(k_pi, mean, log_std)
        q_t = critic.apply(target_params, seq.obs, a_pi, t_emb, heads, method=critic.q)  # (B,T,2)
        v = jnp.min(q_t, axis=-1) - jnp.exp(log_alpha) * logp
    if bounds is not None:
        v = clamp_to_bounds(v, bounds)
    return jax.lax.stop_gradient(batch.rew + gamma * (1.0 - batch.term) * _next(v))


def critic_loss(
    critic_params: Any,
    policy_params: Any,
    target_params: Any,
    log_alpha: jax.Array,
    batch: Batch,
    key: jax.Array,
    *,
    policy: Policy,
    critic: Critic,
    gamma: float,
    bounds: jax.Array | None = None,
    policy_out: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """REDQ critic loss; aux has the online critic's embedding (for the policy step), the targets
    y (for `guard_update`) and stats. `policy_out`: as in `td_targets`."""
    y = td_targets(
        policy_params, target_params, log_alpha, batch, key,
        policy=policy, critic=critic, gamma=gamma, bounds=bounds, policy_out=policy_out,
    )  # fmt: skip
    seq = batch.seq
    emb = critic.apply(critic_params, seq, method=critic.embed)
    q = critic.apply(critic_params, seq.obs, batch.act, emb, method=critic.q)
    per_head = jax.vmap(lambda qe: masked_mean((qe - y) ** 2, batch.mask), in_axes=-1)(q)
    loss = jnp.sum(per_head)
    aux = {
        "embedding": jax.lax.stop_gradient(emb),
        "target": y,
        "q_mean": masked_mean(jnp.mean(q, axis=-1), batch.mask),
        "target_mean": masked_mean(y, batch.mask),
    }
    return loss, aux


def policy_loss(
    policy_params: Any,
    critic_params: Any,
    critic_embedding: jax.Array,
    log_alpha: jax.Array,
    batch: Batch,
    key: jax.Array,
    *,
    policy: Policy,
    critic: Critic,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """SAC policy loss with the mean over the ensemble; aux: entropy estimate and log-probs."""
    return policy_objective(
        policy.apply(policy_params, batch.seq), critic_params, critic_embedding, log_alpha, batch,
        key, critic=critic, discrete=policy.discrete,
    )  # fmt: skip


def policy_objective(
    policy_out: tuple[jax.Array, jax.Array],
    critic_params: Any,
    critic_embedding: jax.Array,
    log_alpha: jax.Array,
    batch: Batch,
    key: jax.Array,
    *,
    critic: Critic,
    discrete: bool,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`policy_loss` as a function of the policy's (mean, log_std) on `batch.seq`, each
    (batch, T, act_dim): its gradient pulled back through the policy's VJP is the policy gradient,
    so one forward pass serves the TD targets and the policy step."""
    seq = batch.seq
    mean, log_std = policy_out
    if discrete:  # sum_a pi(a) (alpha logpi(a) - mean_e Q_e(a)); logp = E[logpi]
        logpi = jax.nn.log_softmax(mean)
        q = critic.apply(critic_params, seq.obs, critic_embedding, method=critic.q_all)
        per_a = jnp.exp(log_alpha) * logpi - jnp.mean(q, axis=-2)
        loss = masked_mean(jnp.sum(jnp.exp(logpi) * per_a, axis=-1), batch.mask)
        logp = jnp.sum(jnp.exp(logpi) * logpi, axis=-1)
        return loss, {
            "logp": jax.lax.stop_gradient(logp),
            "entropy": -masked_mean(logp, batch.mask),
        }
    a, logp = tanh_gaussian_sample(key, mean, log_std)
    q = critic.apply(critic_params, seq.obs, a, critic_embedding, method=critic.q)
    loss = masked_mean(jnp.exp(log_alpha) * logp - jnp.mean(q, axis=-1), batch.mask)
    return loss, {"logp": jax.lax.stop_gradient(logp), "entropy": -masked_mean(logp, batch.mask)}


def alpha_loss(
    log_alpha: jax.Array, logp: jax.Array, mask: jax.Array, target_entropy: float
) -> jax.Array:
    """Temperature loss: drives the policy entropy towards target_entropy."""
    return -log_alpha * masked_mean(jax.lax.stop_gradient(logp) + target_entropy, mask)
