"""Shared helper for the resel.envs tests (a helper module, not a test module, so pytest does not
collect it): random-action rollouts under scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def rollout(env, params, key, num_steps: int, policy=None):
    """Scan `num_steps` steps from a reset; returns dict of stacked per-step outputs.

    `policy(key, obs, t) -> action`; default: uniform random from the action space.
    `ep_len` is the length of the episode so far counted including this step.
    """
    space = env.action_space(params)
    if policy is None:

        def policy(k, obs, t):
            return space.sample(k)

    def body(carry, k):
        obs, state, ep_len, t = carry
        k_act, k_step = jax.random.split(k)
        action = policy(k_act, obs, t)
        obs2, state2, reward, done, info = env.step(k_step, state, action, params)
        ep_len = ep_len + 1
        out = dict(
            obs=obs2,
            reward=reward,
            done=done,
            terminated=info["terminated"],
            truncated=info["truncated"],
            final_obs=info["final_obs"],
            ep_len=ep_len,
            time=state2.time,
            action=action,
        )
        return (obs2, state2, jnp.where(done, 0, ep_len), t + 1), out

    k_reset, k_run = jax.random.split(key)
    obs0, state0 = env.reset(k_reset, params)
    keys = jax.random.split(k_run, num_steps)
    _, out = jax.lax.scan(body, (obs0, state0, jnp.int32(0), jnp.int32(0)), keys)
    out["obs0"] = obs0
    return out
