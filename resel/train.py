"""RESeL training (Algorithm 1): `make_train(config, env, env_params)` and `run(...)`.

`make_train` returns jitted pure functions over a `TrainState` (PureJaxRL style): `init(key)`,
`warmup(state)` (uniform-random actions), `train_chunk(state)` (config.eval_every environment steps,
one critic update per `env_steps_per_update` steps, a policy + alpha update every `policy_every`
critic updates) and `evaluate(state, key)` (deterministic actions, zero initial state). Each is
vmapped over a leading seed axis, so several seeds train in one process; `run` shards that axis
over all devices when they divide the seed count (`optim4rl.distributed`: also over processes).

`run(config, env_name, seeds, out_dir)` drives them with a progress bar, writes config.json,
metrics.jsonl and atomic checkpoints, resumes, and stops with `TrainingDiverged` at a non-finite
loss, keeping the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optim4rl import distributed
from optim4rl.checkpoint import atomic_write_bytes
from resel import buffer as rb
from resel.config import Config, from_dict
from resel.losses import alpha_loss, critic_loss, policy_loss
from resel.networks import Critic, Policy, Seq, tanh_gaussian_sample

CHECKPOINT = "checkpoint.msgpack"
FORMAT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """A loss became non-finite; the run stopped and the last good checkpoint was kept.

    `seed` is the seed whose loss went non-finite (all seeds train together, so all stop);
    `rows` are the metric rows of every seed up to the last finite update, as `run` returns them.
    """

    def __init__(self, message: str, seed: int | None = None, rows: list[dict] | None = None):
        super().__init__(message)
        self.seed = seed
        self.rows = rows or []


class AgentState(NamedTuple):
    policy: Any
    critic: Any
    target: Any
    log_alpha: jax.Array
    policy_opt: Any
    critic_opt: Any
    alpha_opt: Any


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


def _zero_seq(obs_dim: int, act_dim: int, batch: tuple[int, ...]) -> Seq:
    z = lambda d: jnp.zeros(batch + (d,))
    return Seq(z(obs_dim), z(obs_dim), z(act_dim), z(1), jnp.ones(batch))


def buffer_capacity(config: Config, episode_len: int) -> int:
    """Rows of the replay ring: config.buffer_size, or enough to keep every step of the run."""
    c = config
    return c.buffer_size or (c.total_steps + c.total_steps // max(episode_len, 1) + episode_len + 2)


def make_train(config: Config, env: Any, env_params: Any) -> Trainer:
    """Build RESeL's jitted training functions for `env` (a resel.envs / gymnax-style task)."""
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
    unit = c.policy_every * c.env_steps_per_update
    chunk_units = c.eval_every // unit

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
        log_alpha = jnp.log(jnp.asarray(c.init_alpha, jnp.float32))
        agent = AgentState(
            p, q, q, log_alpha, policy_tx.init(p), critic_tx.init(q), alpha_tx.init(log_alpha)
        )
        obs, env_state = env.reset(k_env, env_params)
        actor = _new_actor(env_state, obs.reshape(-1), p)
        buf = rb.init_buffer(capacity, max_trajs, obs_dim, act_dim)
        z = jnp.zeros((), jnp.int32)
        return TrainState(agent, buf, actor, key, z, z)

    def _new_actor(env_state, obs, p) -> Actor:
        carry = policy.apply(p, 1, method=policy.initial_carry)
        return Actor(
            env_state, obs, jnp.zeros(obs_dim), jnp.zeros(act_dim), jnp.zeros(()),
            jnp.ones(()), carry, jnp.zeros(()), jnp.zeros((), jnp.int32),
        )  # fmt: skip

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
        (q_loss, q_aux), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            agent.critic, agent.policy, agent.target, agent.log_alpha, batch, k_q,
            policy=policy, critic=critic, gamma=c.gamma,
        )  # fmt: skip
        upd, critic_opt = critic_tx.update(q_grads, agent.critic_opt, agent.critic)
        critic_p = optax.apply_updates(agent.critic, upd)
        target = optax.incremental_update(critic_p, agent.target, c.tau)
        metrics = {
            "critic_loss": q_loss,
            "q_mean": q_aux["q_mean"],
            "batch_transitions": jnp.sum(batch.mask),
            "batch_dropped": batch.dropped.astype(jnp.float32),
            **grad_norms(q_grads, "critic"),
        }
        agent = agent._replace(critic=critic_p, target=target, critic_opt=critic_opt)
        if with_policy:
            (p_loss, p_aux), p_grads = jax.value_and_grad(policy_loss, has_aux=True)(
                agent.policy, agent.critic, q_aux["embedding"], agent.log_alpha, batch, k_pi,
                policy=policy, critic=critic,
            )  # fmt: skip
            upd, policy_opt = policy_tx.update(p_grads, agent.policy_opt, agent.policy)
            a_loss, a_grad = jax.value_and_grad(alpha_loss)(
                agent.log_alpha, p_aux["logp"], batch.mask, target_entropy
            )
            if discrete:  # fixed temperature for categorical policies (as in the paper)
                a_grad = jnp.zeros_like(a_grad)
            a_upd, alpha_opt = alpha_tx.update(a_grad, agent.alpha_opt, agent.log_alpha)
            agent = agent._replace(
                policy=optax.apply_updates(agent.policy, upd),
                policy_opt=policy_opt,
                log_alpha=optax.apply_updates(agent.log_alpha, a_upd),
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
        """eval_every env steps with updates; per-unit metrics (chunk_units,) plus episode returns."""

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
                for k, v in m.items():  # critic metrics: mean over the unit's critic updates
                    w = 1.0 if k in policy_keys else 1.0 / c.policy_every
                    metrics[k] = metrics.get(k, 0.0) + w * v
            metrics["alpha"] = jnp.exp(s.agent.log_alpha)
            return s, (metrics, jnp.stack(rets))

        state, (metrics, rets) = jax.lax.scan(body, state, None, length=chunk_units)
        metrics["episode_return"] = rets.reshape(-1)
        return state, metrics

    def evaluate(state: TrainState, key) -> jax.Array:
        """Mean return of eval_episodes deterministic episodes (tanh(mean)), zero initial state."""
        p = state.agent.policy

        def episode(k):
            k_reset, k_run = jax.random.split(k)
            obs, env_state = env.reset(k_reset, env_params)
            actor = _new_actor(env_state, obs.reshape(-1), p)

            def body(carry, k_t):
                actor, ret, alive = carry
                (mean, _), pc = policy.apply(p, _inputs(actor), actor.carry, method=policy.step)
                a = jax.nn.one_hot(jnp.argmax(mean[0]), act_dim) if discrete else jnp.tanh(mean[0])
                obs, env_state, rew, done, _ = env.step(k_t, actor.env_state, scale(a), env_params)
                ret = ret + alive * jnp.asarray(rew, jnp.float32).reshape(())
                alive = alive * (1.0 - done.astype(jnp.float32))
                actor = actor._replace(
                    env_state=env_state, obs=obs.reshape(-1), last_obs=actor.obs, last_act=a,
                    last_rew=jnp.asarray(rew, jnp.float32).reshape(()), start=jnp.zeros(()),
                    carry=pc,
                )  # fmt: skip
                return (actor, ret, alive), None

            (_, ret, _), _ = jax.lax.scan(
                body, (actor, jnp.zeros(()), jnp.ones(())), jax.random.split(k_run, ep_len)
            )
            return ret

        return jnp.mean(jax.vmap(episode)(jax.random.split(key, c.eval_episodes)))

    return Trainer(
        config=c,
        policy=policy,
        critic=critic,
        layout=layout,
        init=jax.jit(jax.vmap(init)),
        warmup=jax.jit(jax.vmap(warmup)),
        train_chunk=jax.jit(jax.vmap(train_chunk)),
        evaluate=jax.jit(jax.vmap(evaluate)),
        chunk_updates=chunk_units * c.policy_every,
        update=jax.jit(functools.partial(update, with_policy=True)),
        env=env,
    )


# ---------------------------------------------------------------------------------------------
# Files: checkpoints (msgpack, atomic) and metrics.jsonl


def save_checkpoint(path: Path, state: TrainState, config: Config, seeds: Sequence[int]) -> None:
    """Whole training state (networks, optimizers, replay buffer, envs) as msgpack, atomically."""
    header = {
        "format_version": FORMAT_VERSION,
        "config": config.to_dict(),
        "seeds": list(seeds),
        "step": int(np.asarray(state.step).reshape(-1)[0]),
    }
    payload = {"header": json.dumps(header), "state": flax.serialization.to_state_dict(state)}
    atomic_write_bytes(path, flax.serialization.msgpack_serialize(payload))


def read_header(path: Path) -> str:
    raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(raw, dict) or "header" not in raw:
        raise ValueError(f"{path} is not a RESeL checkpoint (no header)")
    return raw["header"]


def load_checkpoint(
    path: Path, template: TrainState, config: Config, seeds: Sequence[int]
) -> tuple[TrainState, dict]:
    """Restore a checkpoint into `template`; a different config, seeds or format is an error."""
    raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
    if not isinstance(raw, dict) or "header" not in raw or "state" not in raw:
        raise ValueError(f"{path} is not a RESeL checkpoint (no header/state)")
    header = json.loads(raw["header"])
    if header.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format {header.get('format_version')}, expected {FORMAT_VERSION}"
        )
    saved = dataclasses.replace(from_dict(header["config"]), total_steps=config.total_steps)
    if saved != config:
        diff = {
            k: (v, config.to_dict()[k])
            for k, v in saved.to_dict().items()
            if config.to_dict()[k] != v
        }
        raise ValueError(f"{path} was written with a different config: {diff} (saved, now)")
    if list(header["seeds"]) != list(seeds):
        raise ValueError(f"{path} holds seeds {header['seeds']}, not {list(seeds)}")
    state = flax.serialization.from_state_dict(template, raw["state"])
    return jax.tree.map(jnp.asarray, state), header


def _json_value(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


class MetricsLog:
    """Append-only metrics.jsonl; on resume, rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.rows: list[dict] = []
        if resume_step is not None and path.exists():
            keep = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
            self.rows = [r for r in keep if r.get("step", 0) <= resume_step]
            atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())
        elif path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


# ---------------------------------------------------------------------------------------------


def make_env(env_name: str):
    """A resel.envs task by name (the agent feeds the last reward itself, so no wrapper)."""
    from resel import envs

    return envs.make(env_name)


_TRAINERS: dict[tuple[Config, str], Trainer] = {}


def _trainer(config: Config, env_name: str, env: Any, env_params: Any) -> Trainer:
    """make_train, reusing the compiled functions of a (config, task) already built here."""
    # total_steps only sizes the default replay ring, so runs of any length can share a trainer
    key = (config if config.buffer_size is None else dataclasses.replace(config, total_steps=0),
           env_name)  # fmt: skip
    if key not in _TRAINERS or _TRAINERS[key].env is not env:
        _TRAINERS[key] = make_train(config, env, env_params)
    return _TRAINERS[key]


def run(
    config: Config,
    env_name: str,
    seeds: int | Sequence[int] = 0,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    env: tuple[Any, Any] | None = None,
) -> list[dict]:
    """Train `config` on `env_name` for every seed at once (vmapped); returns the metric rows.

    Rows: {"step", "seed", "eval_return", "train_return", losses, "alpha", grad norms per module,
    "sec_per_update"} after every evaluation. With `out_dir`: config.json, metrics.jsonl and
    checkpoint.msgpack (every checkpoint_every steps) there; `resume=True` continues from the
    checkpoint. A non-finite loss raises `TrainingDiverged` after recording where it happened.
    """
    from tqdm.auto import tqdm

    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    env, env_params = env if env is not None else make_env(env_name)
    c = config
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT if out else None
    if resume:
        if ckpt is None or not ckpt.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        if c.buffer_size is None:  # a longer run keeps the replay ring it was started with
            saved = from_dict(json.loads(read_header(ckpt))["config"])
            c = dataclasses.replace(
                c, buffer_size=buffer_capacity(saved, int(env.episode_length(env_params)))
            )
    trainer = _trainer(c, env_name, env, env_params)
    state = trainer.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    start_step = 0
    if resume:
        state, header = load_checkpoint(ckpt, state, c, seeds)
        start_step = header["step"]
    state = distributed.shard_seeds(state)  # over all devices (and processes) if they divide
    write = out is not None and distributed.is_main()  # several processes: process 0 writes
    if write:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"env": env_name, "seeds": seeds, "config": c.to_dict()}
        atomic_write_bytes(out / "config.json", json.dumps(meta, indent=1).encode())
        log = MetricsLog(out / "metrics.jsonl", start_step if resume else None)
    rows: list[dict] = list(log.rows) if write else []
    eval_base = jax.random.PRNGKey(10_000 + seeds[0])  # eval episodes depend on the step only
    bar = tqdm(
        total=c.total_steps, initial=start_step, disable=not progress, unit="step",
        desc=f"RESeL {env_name} {c.net.encoder}",
    )  # fmt: skip
    if start_step == 0 and c.warmup_steps:
        state = trainer.warmup(state)
        bar.update(c.warmup_steps)
    step = int(distributed.gather(state.step)[0])
    last_ckpt = step if resume else -1
    while step < c.total_steps:
        t0 = time.perf_counter()
        new_state, m = trainer.train_chunk(state)
        m = distributed.gather(m)
        dt = time.perf_counter() - t0
        bad = ~(np.isfinite(m["critic_loss"]) & np.isfinite(m["policy_loss"]))
        if bad.any():
            unit_i = int(np.nonzero(bad.any(axis=0))[0][0])
            seed_i = int(np.nonzero(bad[:, unit_i])[0][0])
            at = step + (unit_i + 1) * c.policy_every * c.env_steps_per_update
            which = "critic" if not np.isfinite(m["critic_loss"][seed_i, unit_i]) else "policy"
            msg = (
                f"non-finite {which} loss at env step ~{at} (update {at - c.warmup_steps}) for "
                f"seed {seeds[seed_i]}; stopped. The last good checkpoint "
                f"(step {last_ckpt if last_ckpt >= 0 else 'none'}) is kept."
            )
            if write:
                log.write({"step": at, "seed": seeds[seed_i], "event": "diverged", "message": msg})
            bar.close()
            raise TrainingDiverged(msg, seed=seeds[seed_i], rows=rows)
        state = new_state
        step = int(distributed.gather(state.step)[0])
        k = jax.random.fold_in(eval_base, step)
        returns = distributed.gather(trainer.evaluate(state, jax.random.split(k, len(seeds))))
        for i, seed in enumerate(seeds):
            row = {"step": step, "seed": seed, "eval_return": float(returns[i])}
            ep = m["episode_return"][i]
            ep = ep[np.isfinite(ep)]
            row["train_return"] = _finite_or_none(float(ep.mean())) if ep.size else None
            for k_, v in m.items():
                if k_ != "episode_return":
                    row[k_] = _json_value(np.mean(v[i]))
            row["sec_per_update"] = dt / trainer.chunk_updates
            rows.append(row)
            if write:
                log.write(row)
        bar.update(step - bar.n)
        bar.set_postfix(
            eval=f"{returns.mean():.1f}",
            q_loss=f"{np.mean(m['critic_loss']):.3g}",
            alpha=f"{np.mean(m['alpha']):.3g}",
        )
        if out and (step - max(last_ckpt, 0) >= c.checkpoint_every or step >= c.total_steps):
            host = distributed.gather(state)  # every process takes part
            if write:
                save_checkpoint(ckpt, host, c, seeds)
            last_ckpt = step
    bar.close()
    return rows
