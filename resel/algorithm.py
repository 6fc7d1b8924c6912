"""RESeL's algorithm (Algorithm 1, App. C): `make_train(config, env, env_params) -> Trainer`.

The whole SAC + REDQ update is here (`update` inside `make_train`): one critic step on a batch of
whole trajectories (`resel.losses`), the Polyak step of the target critic after every critic step,
the release's target guard, and every `policy_every` critic steps a policy and temperature step.
`make_train` returns jitted pure functions over a `TrainState` (PureJaxRL style): `init(key)`,
`warmup(state)` (uniform-random actions), `train_chunk(state)` (config.eval_every environment
steps, one critic update per `env_steps_per_update` steps) and `evaluate(state, key)`
(deterministic actions, zero initial state; the mean return and success rate of its episodes).
Each is vmapped over a leading seed axis, so several seeds train in one process.
`resel.train.run` drives them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from resel import buffer as rb
from resel.config import Config
from resel.losses import NO_BOUNDS, alpha_loss, critic_loss, guard_update, policy_objective
from resel.networks import Critic, Policy, Seq, tanh_gaussian_sample


class AgentState(NamedTuple):
    policy: Any
    critic: Any
    target: Any
    log_alpha: jax.Array
    policy_opt: Any
    critic_opt: Any
    alpha_opt: Any
    q_bounds: jax.Array  # (2,) [lo, hi]: running range of past targets (`losses.guard_update`)


class Actor(NamedTuple):
    """Acting state of one environment: the history inputs of the next step and the policy carry."""

    env_state: Any
    obs: jax.Array
    last_obs: jax.Array
    last_act: jax.Array
    last_rew: jax.Array
    start: jax.Array
    carry: Any
    ep_return: jax.Array
    ep_len: jax.Array


class TrainState(NamedTuple):
    agent: AgentState
    buffer: rb.Buffer
    actor: Actor
    key: jax.Array
    step: jax.Array  # environment steps taken
    updates: jax.Array  # critic updates taken


MODULE_METRICS = ("pre_encoder", "context_encoder", "obs_encoder", "action_encoder", "head")


def grad_norms(grads: Any, prefix: str) -> dict[str, jax.Array]:
    """Global L2 norm of the gradient of each top-level module, and of everything."""
    tree = grads["params"]
    out = {f"{prefix}/grad_norm/{k}": optax.tree.norm(v) for k, v in tree.items()}
    out[f"{prefix}/grad_norm/total"] = optax.tree.norm(tree)
    return out


def build_optimizer(specs: Sequence[tuple[str, str]], encoder: str) -> optax.GradientTransformation:
    """Per-module optimizer through `optim4rl.from_spec` (patterns over flax parameter paths)."""
    import optim4rl
    from resel.config import active_module_optims

    return optim4rl.from_spec(active_module_optims(specs, encoder))


@dataclass(frozen=True)
class Trainer:
    """The jitted, seed-vmapped functions of one configuration (see the module docstring)."""

    config: Config
    policy: Policy
    critic: Critic
    layout: rb.Layout
    init: Any
    warmup: Any
    train_chunk: Any
    evaluate: Any
    chunk_updates: int
    update: Any = None  # jitted (agent, buffer, key) -> (agent, metrics): critic + policy step
    env: Any = None
    eval_params: Any = None  # what make_train was given (None: evaluate on env_params)
    # the same four functions for one seed, unjitted (the driver's agent contract)
    pure: dict[str, Any] | None = None


def _zero_seq(obs_dim: int, act_dim: int, batch: tuple[int, ...]) -> Seq:
    z = lambda d: jnp.zeros(batch + (d,))
    return Seq(z(obs_dim), z(obs_dim), z(act_dim), z(1), jnp.ones(batch))


def buffer_capacity(config: Config, episode_len: int) -> int:
    """Rows of the replay ring: config.buffer_size, or room for min(total_steps, max_transitions)
    transitions with their trajectories' tail rows (the oldest are evicted beyond that)."""
    c = config
    n = min(c.total_steps, c.max_transitions)
    return c.buffer_size or (n + n // max(episode_len, 1) + episode_len + 2)


def make_train(
    config: Config, env: Any, env_params: Any, eval_params: Any | None = None
) -> Trainer:
    """Build RESeL's jitted training functions for `env` (a resel.envs / gymnax-style task).

    `evaluate` runs on `eval_params` (e.g. the held-out gravities) when given, else `env_params`.
    """
    space = env.action_space(env_params)
    discrete = bool(getattr(space, "discrete", False))
    if not discrete and not hasattr(space, "low"):
        raise ValueError(f"unsupported action space {space!r}: need a Box or a Discrete space")
    act_dim = int(space.n) if discrete else int(np.prod(space.shape))
    obs_dim = int(np.prod(env.observation_space(env_params).shape))
    if not discrete:
        low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    ep_len = int(env.episode_length(env_params))
    c = config
    given_eval_params = eval_params
    eval_params = env_params if eval_params is None else eval_params
    eval_len = int(env.episode_length(eval_params))
    policy = Policy(c.net, c.use_reward, act_dim, discrete)
    critic = Critic(c.net, c.use_reward, act_dim, discrete)
    layout = rb.make_layout(
        c.batch_size, ep_len, packed=c.packed, k_zero=c.zero_steps,
        max_trajs_per_batch=c.max_trajs_per_batch, rows=c.batch_rows,
    )  # fmt: skip
    capacity = buffer_capacity(c, ep_len)
    max_trajs = capacity // 2 + 1
    policy_tx = build_optimizer(c.policy_optim, c.net.encoder)
    critic_tx = build_optimizer(c.critic_optim, c.net.encoder)
    import optim4rl

    alpha_tx = optim4rl.from_spec(c.alpha_optim)
    target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
    guard_decay = 1.0 if discrete else c.q_guard_decay  # the release's choice per action space
    # a cycle: policy_every critic updates (each after env_steps_per_update env steps), the last
    # with a policy update
    cycle = c.policy_every * c.env_steps_per_update
    chunk_cycles = c.eval_every // cycle

    def scale(a):  # [-1, 1] -> the action space; one-hot -> the action's index
        if discrete:
            return jnp.argmax(a, axis=-1)
        return low + (a + 1.0) * 0.5 * (high - low)

    def choose(key, mean, log_std):  # a sampled action as the networks see it (one-hot if discrete)
        if discrete:
            return jax.nn.one_hot(jax.random.categorical(key, mean), act_dim)
        return tanh_gaussian_sample(key, mean, log_std)[0]

    def init(key) -> TrainState:
        k_pi, k_q, k_env, key = jax.random.split(key, 4)
        seq = _zero_seq(obs_dim, act_dim, (1, 2))
        p = policy.init(k_pi, seq)
        q = critic.init(k_q, seq, jnp.zeros((1, 2, act_dim)))
        alpha = c.discrete_alpha if discrete else c.init_alpha
        log_alpha = jnp.log(jnp.asarray(alpha, jnp.float32))
        agent = AgentState(
            p, q, q, log_alpha, policy_tx.init(p), critic_tx.init(q), alpha_tx.init(log_alpha),
            jnp.asarray(NO_BOUNDS, jnp.float32),
        )  # fmt: skip
        obs, env_state = env.reset(k_env, env_params)
        actor = _episode_start(_new_actor(env_state, obs.reshape(-1), p), k_env, True)
        buf = rb.init_buffer(capacity, max_trajs, obs_dim, act_dim)
        z = jnp.zeros((), jnp.int32)
        return TrainState(agent, buf, actor, key, z, z)

    def _new_actor(env_state, obs, p) -> Actor:
        carry = policy.apply(p, 1, method=policy.initial_carry)
        return Actor(
            env_state, obs, jnp.zeros(obs_dim), jnp.zeros(act_dim), jnp.zeros(()),
            jnp.ones(()), carry, jnp.zeros(()), jnp.zeros((), jnp.int32),
        )  # fmt: skip

    random_state = c.random_initial_state and c.net.encoder in ("mamba", "gru")

    def _episode_start(actor: Actor, key, done) -> Actor:
        """Where `done`, the policy's context-encoder state for the next training episode: each
        entry ~ U[-1, 1] (Mamba: conv buffer and SSM state; GRU: hidden), the release's
        `make_rnd_init_state`, with the start flag off so that the network keeps it."""
        if not random_state:
            return actor
        leaves, tree = jax.tree.flatten(actor.carry)
        keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
        draws = [
            jax.random.uniform(k, x.shape, x.dtype, -1.0, 1.0)
            for k, x in zip(keys, leaves, strict=True)
        ]
        carry = jax.tree.map(lambda r, x: jnp.where(done, r, x), tree.unflatten(draws), actor.carry)
        return actor._replace(carry=carry, start=jnp.zeros(()))

    def _inputs(actor: Actor) -> Seq:
        return Seq(
            actor.obs[None], actor.last_obs[None], actor.last_act[None],
            actor.last_rew.reshape(1, 1), actor.start.reshape(1),
        )  # fmt: skip

    def env_step(state: TrainState, key, random: bool) -> tuple[TrainState, jax.Array]:
        """Act, step the env, store the transition; returns the finished episode's return or NaN."""
        k_act, k_env = jax.random.split(key)
        a_st = state.actor
        if random:
            if discrete:
                a = jax.nn.one_hot(jax.random.randint(k_act, (), 0, act_dim), act_dim)
            else:
                a = jax.random.uniform(k_act, (act_dim,), minval=-1.0, maxval=1.0)
            carry = a_st.carry
        else:
            (mean, log_std), carry = policy.apply(
                state.agent.policy, _inputs(a_st), a_st.carry, method=policy.step
            )
            a = choose(k_act, mean, log_std)[0]
        obs, env_state, rew, done, info = env.step(k_env, a_st.env_state, scale(a), env_params)
        rew = jnp.asarray(rew, jnp.float32).reshape(())
        final_obs = info["final_obs"].reshape(-1)
        buf = rb.add(state.buffer, a_st.obs, a, rew, info["terminated"], final_obs, done)
        ret = a_st.ep_return + rew
        d = done.astype(jnp.float32)
        actor = Actor(
            env_state=env_state,
            obs=obs.reshape(-1),
            last_obs=a_st.obs * (1.0 - d),
            last_act=a * (1.0 - d),
            last_rew=rew * (1.0 - d),
            start=d,
            carry=carry,
            ep_return=ret * (1.0 - d),
            ep_len=(a_st.ep_len + 1) * (1 - done.astype(jnp.int32)),
        )
        actor = _episode_start(actor, k_env, done)
        finished = jnp.where(done, ret, jnp.nan)
        return state._replace(buffer=buf, actor=actor, step=state.step + 1), finished

    def warmup(state: TrainState) -> TrainState:
        def body(s, _):
            key, sub = jax.random.split(s.key)
            s, _ = env_step(s._replace(key=key), sub, random=True)
            return s, None

        state, _ = jax.lax.scan(body, state, None, length=c.warmup_steps)
        return state

    def update(agent: AgentState, buf: rb.Buffer, key, with_policy: bool):
        k_b, k_q, k_pi = jax.random.split(key, 3)
        batch = rb.sample(buf, k_b, layout)
        bounds = agent.q_bounds if c.q_guard else None
        # the policy's forward pass on the batch, once: the TD targets and the policy step use the
        # same (pre-update) policy, so its outputs serve both and the policy gradient is their VJP
        run_policy = lambda p: policy.apply(p, batch.seq)
        if with_policy:
            pi_out, pi_vjp = jax.vjp(run_policy, agent.policy)
        else:
            pi_out = run_policy(agent.policy)
        (q_loss, q_aux), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            agent.critic, agent.policy, agent.target, agent.log_alpha, batch, k_q,
            policy=policy, critic=critic, gamma=c.gamma, bounds=bounds, policy_out=pi_out,
        )  # fmt: skip
        upd, critic_opt = critic_tx.update(q_grads, agent.critic_opt, agent.critic)
        critic_p = optax.apply_updates(agent.critic, upd)
        target = optax.incremental_update(critic_p, agent.target, c.tau)
        n_trans = jnp.sum(batch.mask)
        metrics = {
            "critic_loss": q_loss,
            "q_mean": q_aux["q_mean"],
            "batch_transitions": n_trans,
            "batch_dropped": batch.dropped.astype(jnp.float32),
            # short of batch_size although the buffer has trajectories: the layout is too small
            "batch_short": ((n_trans < c.batch_size) & (rb.num_valid(buf) > 0)).astype(jnp.float32),
            **grad_norms(q_grads, "critic"),
        }
        agent = agent._replace(critic=critic_p, target=target, critic_opt=critic_opt)
        if c.q_guard:
            agent = agent._replace(
                q_bounds=guard_update(agent.q_bounds, q_aux["target"], batch.mask, guard_decay)
            )
        if with_policy:
            (p_loss, p_aux), pi_out_grads = jax.value_and_grad(policy_objective, has_aux=True)(
                pi_out, agent.critic, q_aux["embedding"], agent.log_alpha, batch, k_pi,
                critic=critic, discrete=policy.discrete,
            )  # fmt: skip
            (p_grads,) = pi_vjp(pi_out_grads)
            upd, policy_opt = policy_tx.update(p_grads, agent.policy_opt, agent.policy)
            a_loss, a_grad = jax.value_and_grad(alpha_loss)(
                agent.log_alpha, p_aux["logp"], batch.mask, target_entropy
            )
            if discrete:  # a fixed temperature, no optimizer step (the release's sac_alpha)
                log_alpha, alpha_opt = agent.log_alpha, agent.alpha_opt
            else:
                a_upd, alpha_opt = alpha_tx.update(a_grad, agent.alpha_opt, agent.log_alpha)
                log_alpha = optax.apply_updates(agent.log_alpha, a_upd)
                if c.log_alpha_max is not None:
                    log_alpha = jnp.minimum(log_alpha, c.log_alpha_max)
            agent = agent._replace(
                policy=optax.apply_updates(agent.policy, upd),
                policy_opt=policy_opt,
                log_alpha=log_alpha,
                alpha_opt=alpha_opt,
            )
            metrics |= {
                "policy_loss": p_loss,
                "alpha_loss": a_loss,
                "entropy": p_aux["entropy"],
                **grad_norms(p_grads, "policy"),
            }
        return agent, metrics

    policy_keys = {"policy_loss", "alpha_loss", "entropy"} | {
        f"policy/grad_norm/{k}" for k in (*MODULE_METRICS, "total")
    }

    def train_chunk(state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """eval_every env steps with updates; per-cycle metrics (chunk_cycles,) plus episode returns."""

        def body(s: TrainState, _):
            metrics, rets = {}, []
            for i in range(c.policy_every):
                for _ in range(c.env_steps_per_update):
                    key, sub = jax.random.split(s.key)
                    s, r = env_step(s._replace(key=key), sub, random=False)
                    rets.append(r)
                key, sub = jax.random.split(s.key)
                agent, m = update(s.agent, s.buffer, sub, with_policy=i == c.policy_every - 1)
                s = s._replace(agent=agent, key=key, updates=s.updates + 1)
                for k, v in m.items():  # critic metrics: mean over the cycle's critic updates
                    w = 1.0 if k in policy_keys else 1.0 / c.policy_every
                    metrics[k] = metrics.get(k, 0.0) + w * v
            metrics["alpha"] = jnp.exp(s.agent.log_alpha)
            return s, (metrics, jnp.stack(rets))

        state, (metrics, rets) = jax.lax.scan(body, state, None, length=chunk_cycles)
        metrics["episode_return"] = rets.reshape(-1)
        return state, metrics

    def evaluate(state: TrainState, key) -> dict[str, jax.Array]:
        """eval_episodes deterministic episodes (tanh(mean)), zero initial state: {"return": mean
        return, "success": mean of `info["success"]` at the episode's end (NaN where the env
        reports none, e.g. all but Key-to-Door)}."""
        p = state.agent.policy

        def episode(k):
            k_reset, k_run = jax.random.split(k)
            obs, env_state = env.reset(k_reset, eval_params)
            actor = _new_actor(env_state, obs.reshape(-1), p)

            def body(carry, k_t):
                actor, ret, alive, success = carry
                (mean, _), pc = policy.apply(p, _inputs(actor), actor.carry, method=policy.step)
                a = jax.nn.one_hot(jnp.argmax(mean[0]), act_dim) if discrete else jnp.tanh(mean[0])
                obs, env_state, rew, done, info = env.step(
                    k_t, actor.env_state, scale(a), eval_params
                )
                ret = ret + alive * jnp.asarray(rew, jnp.float32).reshape(())
                # the success of the episode's last step (NaN for envs without info["success"])
                s_t = jnp.asarray(info.get("success", jnp.nan), jnp.float32).reshape(())
                success = jnp.where(alive > 0, s_t, success)
                alive = alive * (1.0 - done.astype(jnp.float32))
                actor = actor._replace(
                    env_state=env_state, obs=obs.reshape(-1), last_obs=actor.obs, last_act=a,
                    last_rew=jnp.asarray(rew, jnp.float32).reshape(()), start=jnp.zeros(()),
                    carry=pc,
                )  # fmt: skip
                return (actor, ret, alive, success), None

            start = (actor, jnp.zeros(()), jnp.ones(()), jnp.full((), jnp.nan))
            (_, ret, _, success), _ = jax.lax.scan(body, start, jax.random.split(k_run, eval_len))
            return {"return": ret, "success": success}

        out = jax.vmap(episode)(jax.random.split(key, c.eval_episodes))
        return jax.tree.map(jnp.mean, out)

    return Trainer(
        config=c,
        policy=policy,
        critic=critic,
        layout=layout,
        init=jax.jit(jax.vmap(init)),
        warmup=jax.jit(jax.vmap(warmup)),
        train_chunk=jax.jit(jax.vmap(train_chunk)),
        evaluate=jax.jit(jax.vmap(evaluate)),
        chunk_updates=chunk_cycles * c.policy_every,
        update=jax.jit(functools.partial(update, with_policy=True)),
        env=env,
        eval_params=given_eval_params,
        pure={"init": init, "warmup": warmup, "train_chunk": train_chunk, "evaluate": evaluate},
    )
