"""The inner agent of Optim4RL: A2C on a gridworld, with any optax optimizer.

Network (spec section 3, the authors' release): small maps flatten -> Dense32 -> ReLU; Catch
flatten -> Dense256 -> ReLU; big maps Conv(16, 2x2, over rows x cols, channels as features) -> ReLU
-> flatten -> Dense32 -> ReLU; heads Dense(num_actions) logits and Dense(1) value. The width is
`A2CConfig.hidden` (None: 256 on Catch, 32 on the gridworlds). `A2CConfig.conv_layout="release"`
builds the release's big-map conv instead: the observation channel-first, (k + 1, rows, cols), as
its gridworld returns it, fed to a flax Conv that takes the last axis as features, so the 2x2
window slides over (object channel x row) with the columns as features, SAME padding.

Loss on a rollout of T steps from E environments, with lambda-returns G (targets use the values
under stop_gradient, bootstrapped from V(s_T), cut at episode ends):
    G_t = r_t + gamma (1 - d_t) ((1 - lambda) V(s_{t+1}) + lambda G_{t+1}),   G_T = V(s_T)
    L = -mean(log pi(a_t|s_t) sg(G_t - V(s_t))) + c_v mean((sg(G_t) - V(s_t))^2) - c_e mean(H(pi))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta_train import envs
from optim4rl.runtime.agent import Agent as RunAgent

CONV_LAYOUTS = ("spatial", "release")


class ActorCritic(nn.Module):
    """Policy logits and state value from a `(..., rows, cols, channels)` observation."""

    num_actions: int
    conv: bool
    hidden: int = 32
    conv_layout: str = "spatial"  # or "release" (see the module docstring)

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch = obs.shape[:-3]
        x = obs.reshape((-1, *obs.shape[-3:]))
        if self.conv:
            release = self.conv_layout == "release"
            if release:
                x = jnp.moveaxis(x, -1, 1)  # (N, k + 1, rows, cols): channel x row window
            padding = "SAME" if release else "VALID"
            x = nn.relu(nn.Conv(16, (2, 2), padding=padding, name="conv")(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden, name="torso")(x))
        logits = nn.Dense(self.num_actions, name="policy")(x)
        value = nn.Dense(1, name="value")(x)[:, 0]
        return logits.reshape((*batch, -1)), value.reshape(batch)


@dataclass(frozen=True)
class A2CConfig:
    """A2C hyperparameters; defaults are the paper's."""

    task: str = "small_dense_short"
    rollout_len: int = 20
    gamma: float = 0.995
    lam: float = 0.95
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    num_envs: int = 1
    num_updates: int = 2000
    reward_scale: float = 1.0
    hidden: int | None = None  # torso width; None: the authors' (envs.hidden_units(task))
    grad_clip: float | None = None  # element-wise clip of the gradient before any optimizer
    conv_layout: str = "spatial"  # big maps: "spatial" (ours) or "release" (the authors' layout)

    def __post_init__(self):
        envs.check_task(self.task)
        if self.conv_layout not in CONV_LAYOUTS:
            raise ValueError(
                f"A2CConfig.conv_layout must be one of {CONV_LAYOUTS}, got {self.conv_layout!r}"
            )
        for name in ("rollout_len", "num_envs", "num_updates"):
            if getattr(self, name) < 1:
                raise ValueError(f"A2CConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"A2CConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"A2CConfig.hidden must be >= 1 or None, got {self.hidden}")

    @property
    def width(self) -> int:
        """The torso width used: `hidden`, or the authors' for the task."""
        return self.hidden or envs.hidden_units(self.task)


class Transition(NamedTuple):
    obs: jax.Array  # (T, E, rows, cols, C)
    action: jax.Array  # (T, E)
    reward: jax.Array  # (T, E)
    done: jax.Array  # (T, E) episode ended after this step (terminated or truncated)


class EnvCarry(NamedTuple):
    """Environment side of an agent: current observations, env states, episode statistics."""

    obs: jax.Array  # (E, rows, cols, C)
    state: Any  # env state, leading axis E
    running: jax.Array  # (E,) return of the episode in progress
    last: jax.Array  # (E,) return of the last finished episode
    episodes: jax.Array  # (E,) finished episodes


class Agent:
    """A2C pieces for one task: init, rollout, loss. Pure functions of their arguments."""

    def __init__(self, config: A2CConfig):
        self.config = config
        self.env, self.env_params = envs.make(config.task)
        self.net = ActorCritic(
            self.env.num_actions, envs.uses_conv(config.task), config.width, config.conv_layout
        )
        obs_shape = self.env.observation_space(self.env_params).shape
        self._dummy = jnp.zeros((1, *obs_shape), jnp.float32)

    def init_params(self, key: jax.Array) -> Any:
        return self.net.init(key, self._dummy)

    def init_env(self, key: jax.Array) -> EnvCarry:
        keys = jax.random.split(key, self.config.num_envs)
        obs, state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.env_params)
        zeros = jnp.zeros((self.config.num_envs,), jnp.float32)
        return EnvCarry(obs, state, zeros, zeros, zeros.astype(jnp.int32))

    def rollout(self, params: Any, carry: EnvCarry, key: jax.Array) -> tuple[Transition, EnvCarry]:
        """`rollout_len` steps of the current policy; no gradient flows through the sampling."""
        params = jax.lax.stop_gradient(params)
        step = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))

        def body(carry: EnvCarry, key):
            k_act, k_env = jax.random.split(key)
            logits, _ = self.net.apply(params, carry.obs)
            action = jax.random.categorical(k_act, logits)
            env_keys = jax.random.split(k_env, self.config.num_envs)
            obs, state, reward, term, trunc, _ = step(
                env_keys, carry.state, action, self.env_params
            )
            done = term | trunc
            running = carry.running + reward
            new = EnvCarry(
                obs=obs,
                state=state,
                running=jnp.where(done, 0.0, running),
                last=jnp.where(done, running, carry.last),
                episodes=carry.episodes + done.astype(jnp.int32),
            )
            # the stored observation is the one the action was taken from
            return new, Transition(carry.obs, action, reward, done)

        keys = jax.random.split(key, self.config.rollout_len)
        carry, traj = jax.lax.scan(body, carry, keys)
        return traj, carry

    def loss(self, params: Any, traj: Transition, last_obs: jax.Array) -> tuple[jax.Array, dict]:
        """A2C loss (module docstring) on `traj`, bootstrapping from `last_obs`."""
        c = self.config
        obs = jnp.concatenate([traj.obs, last_obs[None]], axis=0)
        logits, values = self.net.apply(params, obs)
        logits = logits[:-1]
        v_sg = jax.lax.stop_gradient(values)
        reward = traj.reward * c.reward_scale
        cont = 1.0 - traj.done.astype(jnp.float32)

        def back(g_next, xs):
            r, k, v_next = xs
            g = r + c.gamma * k * ((1.0 - c.lam) * v_next + c.lam * g_next)
            return g, g

        _, returns = jax.lax.scan(back, v_sg[-1], (reward, cont, v_sg[1:]), reverse=True)
        adv = returns - v_sg[:-1]
        logp_all = jax.nn.log_softmax(logits)
        logp = jnp.take_along_axis(logp_all, traj.action[..., None], axis=-1)[..., 0]
        entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1).mean()
        policy_loss = -jnp.mean(logp * adv)
        value_loss = jnp.mean((returns - values[:-1]) ** 2)
        total = policy_loss + c.value_coef * value_loss - c.entropy_coef * entropy
        return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    env: EnvCarry


def finished_episodes(
    running: jax.Array, reward: jax.Array, done: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Summed returns and number of the episodes that finish in a rollout.

    running (E,): return of each env's episode in progress before the rollout; reward, done (T, E).
    An episode's return counts the rewards before the rollout too (as in the authors' release,
    which accumulates over the whole run).
    """

    def step(acc, xs):
        r, d = xs
        acc = acc + r
        return jnp.where(d, 0.0, acc), jnp.where(d, acc, 0.0)

    _, ended = jax.lax.scan(step, running, (reward, done))
    return ended.sum(), done.sum().astype(jnp.float32)


def window_returns(
    total: np.ndarray, count: np.ndarray, last: np.ndarray, edges: np.ndarray
) -> np.ndarray:
    """The authors' logged return per window of updates: the mean return of the episodes that
    finished inside it, sum(total) / sum(count) over updates [edges[j], edges[j+1]).

    total, count, last: (..., num_updates) metrics "episode_return_sum", "episodes",
    "episode_return"; edges (W + 1,) -> (..., W). A window in which no episode finished (the authors
    log nothing there) gets the mean over envs of the last finished episode's return at its end.
    """
    sums = np.add.reduceat(np.asarray(total, float), edges[:-1], axis=-1)
    counts = np.add.reduceat(np.asarray(count, float), edges[:-1], axis=-1)
    fallback = np.asarray(last, float)[..., np.asarray(edges[1:]) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def make_train(config: A2CConfig, optimizer: optax.GradientTransformation):
    """`train(key) -> (final TrainState, metrics)`: `num_updates` A2C updates, jitted end to end.

    metrics["episode_return"] (num_updates,): mean over envs of the last finished episode's return
    (0 until one finishes); metrics["episode_return_sum"] and metrics["episodes"] (num_updates,):
    the summed returns and the number of the episodes that finished in the update's rollout (the
    authors' logging: `window_returns`); metrics["reward_rate"] (num_updates,): mean reward per step in the rollout;
    metrics["finite"] (num_updates,): whether every parameter is finite after the update.
    vmap `train` over keys for seeds.
    """
    train = make_train_fn(config, lambda _: optimizer)
    return jax.jit(lambda key: train(key, None))


def make_train_fn(config: A2CConfig, make_optimizer: Callable[[Any], optax.GradientTransformation]):
    """Unjitted `train(key, hparams)`; the optimizer is `make_optimizer(hparams)`.

    hparams is traced, so one compiled program serves a whole sweep: vmap over learning rates,
    or over meta-parameters of a learned optimizer. With `config.grad_clip` = c every optimizer
    gets the gradient clipped element-wise to [-c, c] first (the authors' `grad_clip`, optax.clip).
    """
    agent = Agent(config)

    def train(key: jax.Array, hparams: Any):
        optimizer = _clipped(config, make_optimizer(hparams))
        update = _update_fn(agent, optimizer)
        k_init, k_env, k_run = jax.random.split(key, 3)
        params = agent.init_params(k_init)
        state = TrainState(params, optimizer.init(params), agent.init_env(k_env))
        return jax.lax.scan(update, state, jax.random.split(k_run, config.num_updates))

    return train


def _clipped(config: A2CConfig, optimizer: optax.GradientTransformation):
    """`optimizer` after the authors' element-wise gradient clip (when `config.grad_clip`)."""
    return optax.chain(optax.clip(config.grad_clip), optimizer) if config.grad_clip else optimizer


def _update_fn(agent: Agent, optimizer: optax.GradientTransformation):
    """One A2C update `(TrainState, key) -> (TrainState, metrics)` (see `make_train`)."""

    def update(state: TrainState, key):
        traj, env = agent.rollout(state.params, state.env, key)
        grads, _ = jax.grad(agent.loss, has_aux=True)(state.params, traj, env.obs)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.all(
            jnp.array([jnp.isfinite(x).all() for x in jax.tree_util.tree_leaves(params)])
        )
        total, count = finished_episodes(state.env.running, traj.reward, traj.done)
        metrics = {
            "episode_return": env.last.mean(),
            "episode_return_sum": total,
            "episodes": count,
            "reward_rate": traj.reward.mean(),
            "finite": finite,
        }
        return TrainState(params, opt_state, env), metrics

    return update


# The authors' final score of a run (analysis_grid.py of their release): the mean of the last 20
# logged returns, one logged return per update in which an episode finished.
SCORE_POINTS = 20


class RunState(NamedTuple):
    """A2C's state under the agent contract: the training state, the key of the update stream
    (`make_train`'s k_run), the updates done, and the last SCORE_POINTS logged returns (a ring
    buffer `logged` written at `logged_count % SCORE_POINTS`)."""

    train: TrainState
    key: jax.Array
    updates: jax.Array
    logged: jax.Array
    logged_count: jax.Array


def make_agent(
    config: A2CConfig, optimizer: optax.GradientTransformation, num_evals: int = 21
) -> RunAgent:
    """A2C under the one agent contract (`optim4rl.runtime.agent`): `config.num_updates` updates
    in `num_evals` windows, with `make_train`'s keys (so the same updates as `train(key)`).

    A chunk is one window of updates (`np.linspace(0, num_updates, num_evals + 1)` edges, so
    windows differ by at most one update: a scan over the longest, the extra step masked). Its
    metrics are the authors' logged return of the window ("return": the mean return of the
    episodes that finished in it, else the mean over envs of the last finished episode's, as
    `window_returns`), "score" (the authors' final score were training to stop here: the mean of
    the last SCORE_POINTS logged returns, one per update in which an episode finished, the
    episodes' mean; "return" while none was logged), "last_episode_return", "episodes" and
    "finite" (every update so far).
    """
    agent = Agent(config)
    optimizer = _clipped(config, optimizer)
    update = _update_fn(agent, optimizer)
    evals = min(num_evals, config.num_updates)
    edges = np.linspace(0, config.num_updates, evals + 1).astype(int)
    longest = int(np.diff(edges).max())
    edges_j = jnp.asarray(edges)
    per_update = config.rollout_len * config.num_envs

    def init(key: jax.Array) -> RunState:
        k_init, k_env, k_run = jax.random.split(key, 3)
        params = agent.init_params(k_init)
        state = TrainState(params, optimizer.init(params), agent.init_env(k_env))
        zero = jnp.zeros((), jnp.int32)
        return RunState(state, k_run, zero, jnp.zeros(SCORE_POINTS, jnp.float32), zero)

    def train_chunk(s: RunState, key: jax.Array):
        del key  # the update keys are make_train's: split(k_run, num_updates)[u]
        end = edges_j[jnp.searchsorted(edges_j, s.updates, side="right")]
        keys = jax.random.split(s.key, config.num_updates)

        def body(carry, i):
            ts, total, count, finite, logged, n_logged = carry
            u = s.updates + i
            new, m = update(ts, keys[jnp.minimum(u, config.num_updates - 1)])
            on = u < end
            ts = jax.tree.map(lambda a, b: jnp.where(on, a, b), new, ts)
            ok = m["finite"] & jnp.isfinite(m["episode_return_sum"])
            log = on & (m["episodes"] > 0)
            point = m["episode_return_sum"] / jnp.maximum(m["episodes"], 1.0)
            slot = n_logged % SCORE_POINTS
            logged = logged.at[slot].set(jnp.where(log, point, logged[slot]))
            return (ts, total + on * m["episode_return_sum"], count + on * m["episodes"],
                    finite & (ok | ~on), logged, n_logged + log), None  # fmt: skip

        zero = jnp.zeros((), jnp.float32)
        carry = (s.train, zero, zero, jnp.array(True), s.logged, s.logged_count)
        (ts, total, count, finite, logged, n_logged), _ = jax.lax.scan(
            body, carry, jnp.arange(longest)
        )
        last = ts.env.last.mean()
        window = jnp.where(count > 0, total / jnp.maximum(count, 1.0), last)
        filled = jnp.arange(SCORE_POINTS) < n_logged
        score = jnp.sum(jnp.where(filled, logged, 0.0)) / jnp.maximum(filled.sum(), 1)
        metrics = {
            "return": window,
            "score": jnp.where(n_logged > 0, score, window),
            "last_episode_return": last,
            "episodes": count,
            "finite": finite,
        }
        return RunState(ts, s.key, end, logged, n_logged), metrics

    return RunAgent(
        name="a2c",
        init=init,
        train_chunk=train_chunk,
        steps=lambda s: s.updates * per_update,
        total_steps=config.num_updates * per_update,
        updates_per_chunk=longest,
    )
