"""Pipeline training of a learned optimizer (Optim4RL, spec section 2), one jitted meta-step.

State: the meta-parameters, the meta-optimizer (Adam) state, and per task a batch of n training
units (agent params, learned-optimizer hidden state, environment), leading axis n.

Meta-step t, per task i:
  1. units with t mod m == r_j are re-initialised (new agent, zero hidden state, new env);
  2. each unit makes K updates theta <- theta - lr_i * f_phi(g_k, h_k), g_k the A2C gradient on a
     fresh rollout (a stop_gradient input to f), then the meta-loss L_i(phi) = mean over units of
     the A2C loss on a (K+1)-th rollout at the final theta;
  3. g_i = dL_i/dphi (truncated backprop through the K updates), rescaled to norm `task_grad_norm`.
Then g = mean_i g_i, clipped to global norm `meta_clip`, and phi <- Adam(phi, g). A non-finite g
leaves the whole state as it was (only the step counter and the skip counter move).

Units are sharded over a 1-d device mesh named "units" (each task's n must divide by the device
count); the mean over units is then an all-reduce that XLA inserts.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from meta_train.a2c import A2CConfig, Agent, EnvCarry
from meta_train.config import MetaTrainConfig
from optim4rl import hidden_size, init_meta_params, scale_by_learned


class Unit(NamedTuple):
    """Training units of one task; every leaf has a leading axis of n units."""

    params: Any
    opt_state: Any
    env: EnvCarry


class MetaState(NamedTuple):
    step: jax.Array  # () int32, the next meta-step t
    meta_params: Any
    meta_opt_state: Any
    units: tuple[Unit, ...]  # one per task
    nonfinite: jax.Array  # () int32, meta-steps skipped for a non-finite meta-gradient


def reset_indices(n: int, m: int, pipeline: bool = True) -> np.ndarray:
    """r_j = int(linspace(0, m - 1, n))[j]; all zero without pipelining."""
    if not pipeline:
        return np.zeros(n, np.int32)
    return np.linspace(0, m - 1, n).astype(np.int32)


def agent_config(config: MetaTrainConfig, task: str) -> A2CConfig:
    return A2CConfig(
        task=task,
        rollout_len=config.rollout_len,
        gamma=config.gamma,
        lam=config.lam,
        value_coef=config.value_coef,
        entropy_coef=config.entropy_coef,
        num_envs=1,
        reward_scale=config.scale_for(task),
    )


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-d mesh named "units" over `devices` (default: all of `jax.devices()`)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.array(devices), ("units",))


def random_meta_params(key: jax.Array, kind: str) -> Any:
    """The random meta-parameters `Pipeline.init(key)` starts from."""
    return init_meta_params(jax.random.split(key)[0], kind)


# Stored activations per inner update, in copies of the optimizer's hidden state (one float per
# hidden feature per agent parameter): the GRUs' gates and states (docs/meta_train.md,
# "Measurements behind defaults"; 6 leaves room for the rollouts).
_RESIDUAL_COPIES = 6


def residual_bytes(config: MetaTrainConfig, params_per_unit: list[int]) -> int:
    """Estimated bytes the meta-gradient stores without remat: 6 copies of every unit's
    optimizer hidden state per inner update, 4-byte floats."""
    hidden = hidden_size(config.kind)
    per_update = sum(n * config.units_per_task * hidden * 4 for n in params_per_unit)
    return _RESIDUAL_COPIES * config.inner_steps * per_update


def device_memory_bytes(device: jax.Device | None = None) -> int:
    """The device's memory (an accelerator's allocator limit, or the host's RAM for CPU)."""
    device = jax.devices()[0] if device is None else device
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def use_remat(config: MetaTrainConfig, params_per_unit: list[int], devices: int = 1) -> bool:
    """`config.remat`, or when None: remat when the stored activations, shared by `devices`
    devices, would take more than a quarter of one device's memory (storing is faster when it
    fits: docs/meta_train.md, "Measurements behind defaults")."""
    if config.remat is not None:
        return config.remat
    return residual_bytes(config, params_per_unit) / devices > device_memory_bytes() / 4


class Pipeline:
    """Pure functions of pipeline training for a config; `step` is jitted."""

    def __init__(self, config: MetaTrainConfig, mesh: Mesh | None = None):
        self.config = config
        self.mesh = mesh
        if mesh is not None:
            n_dev = mesh.devices.size
            if config.units_per_task % n_dev:
                raise ValueError(
                    f"units_per_task={config.units_per_task} is not divisible by the "
                    f"{n_dev} devices of the mesh"
                )
        self.agents = [Agent(agent_config(config, t)) for t in config.tasks]
        resets = reset_indices(config.units_per_task, config.reset_interval, config.pipeline)
        self.resets = jnp.asarray(resets)
        # the most units that reset at one step: only those are initialised, not all n
        self.max_resets = int(np.bincount(resets).max())
        meta_tx = [optax.adam(config.meta_lr)]
        if config.meta_clip is not None:
            meta_tx.insert(0, optax.clip_by_global_norm(config.meta_clip))
        self.meta_optimizer = optax.chain(*meta_tx)
        shapes = [jax.eval_shape(a.init_params, jax.random.key(0)) for a in self.agents]
        sizes = [sum(x.size for x in jax.tree_util.tree_leaves(s)) for s in shapes]
        self.remat = use_remat(config, sizes, 1 if mesh is None else mesh.devices.size)
        self.step = jax.jit(self._step)

    # ---- units -------------------------------------------------------------------------------

    def _learned(self, meta_params) -> optax.GradientTransformation:
        return optax.chain(
            scale_by_learned(meta_params, self.config.kind, grad_clip=self.config.grad_clip),
            optax.scale(-self.config.agent_lr),
        )

    def _fresh_units(self, agent: Agent, keys: jax.Array, meta_params) -> Unit:
        """One fresh unit (params, optimizer state, env) per key of `keys` (m,)."""

        def one(k):
            k_p, k_e = jax.random.split(k)
            params = agent.init_params(k_p)
            return Unit(params, self._learned(meta_params).init(params), agent.init_env(k_e))

        return jax.vmap(one)(keys)

    def _reset_units(self, agent: Agent, units: Unit, key: jax.Array, meta_params, t) -> Unit:
        """Units j with t mod reset_interval == r_j replaced by fresh ones (unit j from
        split(key, n)[j]); only the at most `max_resets` of them are initialised."""
        n = self.config.units_per_task
        mask = (t % self.config.reset_interval) == self.resets
        idx = jnp.nonzero(mask, size=self.max_resets, fill_value=n)[0]  # n: padding, dropped
        keys = jax.random.split(key, n)[jnp.minimum(idx, n - 1)]
        fresh = self._fresh_units(agent, keys, meta_params)
        return jax.tree_util.tree_map(
            lambda old, new: old.at[idx].set(new, mode="drop"), units, fresh
        )

    def _shard_units(self, units):
        if self.mesh is None:
            return units
        sharding = NamedSharding(self.mesh, PartitionSpec("units"))
        return jax.lax.with_sharding_constraint(units, sharding)

    def init(self, key: jax.Array | None = None, meta_params=None) -> MetaState:
        """Fresh (or given) meta-parameters and all units at age 0, placed on the mesh if any."""
        key = jax.random.key(self.config.seed) if key is None else key
        if meta_params is None:
            meta_params = random_meta_params(key, self.config.kind)
        k_units = jax.random.split(key)[1]
        meta_params = jax.tree_util.tree_map(jnp.asarray, meta_params)
        n = self.config.units_per_task
        units = tuple(
            self._fresh_units(
                agent, jax.random.split(jax.random.fold_in(k_units, i), n), meta_params
            )
            for i, agent in enumerate(self.agents)
        )
        state = MetaState(
            step=jnp.int32(0),
            meta_params=meta_params,
            meta_opt_state=self.meta_optimizer.init(meta_params),
            units=units,
            nonfinite=jnp.int32(0),
        )
        return self.place(state)

    def place(self, state: MetaState) -> MetaState:
        """Put units on the mesh (sharded on their leading axis), everything else replicated."""
        if self.mesh is None:
            return state
        units = NamedSharding(self.mesh, PartitionSpec("units"))
        rep = NamedSharding(self.mesh, PartitionSpec())
        return MetaState(
            step=jax.device_put(state.step, rep),
            meta_params=jax.device_put(state.meta_params, rep),
            meta_opt_state=jax.device_put(state.meta_opt_state, rep),
            units=jax.device_put(state.units, units),
            nonfinite=jax.device_put(state.nonfinite, rep),
        )

    # ---- the meta-loss -----------------------------------------------------------------------

    def task_loss(self, meta_params, units: Unit, agent: Agent, key: jax.Array):
        """Mean over units of the A2C loss after K learned updates; aux: new units, returns."""
        opt = self._learned(meta_params)
        k = self.config.inner_steps

        def unit_loss(unit: Unit, key):
            def inner(carry, key):
                params, opt_state, env = carry
                traj, env = agent.rollout(params, env, key)
                grads, _ = jax.grad(agent.loss, has_aux=True)(params, traj, env.obs)
                grads = jax.lax.stop_gradient(grads)
                updates, opt_state = opt.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state, env), None

            # With remat the backward pass keeps only the carries between inner updates and
            # recomputes each update's activations (the optimizer's GRU state is 16 floats per
            # agent parameter); without it, the K updates are unrolled and their activations kept.
            keys = jax.random.split(key, k + 1)
            step = jax.checkpoint(inner) if self.remat else inner
            (params, opt_state, env), _ = jax.lax.scan(
                step, tuple(unit), keys[:k], unroll=not self.remat
            )
            traj, env = agent.rollout(params, env, keys[k])
            loss, _ = agent.loss(params, traj, env.obs)
            return loss, Unit(params, opt_state, env)

        keys = jax.random.split(key, self.config.units_per_task)
        losses, new_units = jax.vmap(unit_loss)(units, keys)
        return losses.mean(), new_units

    def meta_gradient(self, state: MetaState, key: jax.Array):
        """Per-task (normalised) meta-gradients averaged over tasks, after the step's resets.

        Returns (grad, new_units, metrics). Shared by `step` and the sharding test.
        """
        t = state.step
        grads, new_units, losses, returns, norms = [], [], [], [], []
        for i, (agent, units) in enumerate(zip(self.agents, state.units, strict=True)):
            k_task = jax.random.fold_in(jax.random.fold_in(key, t), i)
            k_reset, k_loss = jax.random.split(k_task)
            units = self._reset_units(agent, units, k_reset, state.meta_params, t)
            units = self._shard_units(units)
            (loss, units), grad = jax.value_and_grad(self.task_loss, has_aux=True)(
                state.meta_params, units, agent, k_loss
            )
            norm = optax.tree.norm(grad)
            if self.config.task_grad_norm is not None:
                scale = self.config.task_grad_norm / jnp.maximum(norm, 1e-12)
                grad = jax.tree_util.tree_map(lambda g, s=scale: g * s, grad)
            grads.append(grad)
            new_units.append(self._shard_units(units))
            losses.append(loss)
            returns.append(units.env.last.mean())
            norms.append(norm)
        grad = jax.tree_util.tree_map(lambda *g: sum(g) / len(g), *grads)
        metrics = {
            "meta_loss": jnp.stack(losses),
            "episode_return": jnp.stack(returns),
            "task_grad_norm": jnp.stack(norms),
        }
        return grad, tuple(new_units), metrics

    def _step(self, state: MetaState, key: jax.Array) -> tuple[MetaState, dict]:
        grad, units, metrics = self.meta_gradient(state, key)
        leaves = jax.tree_util.tree_leaves((grad, units))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
        updates, meta_opt_state = self.meta_optimizer.update(
            grad, state.meta_opt_state, state.meta_params
        )
        meta_params = optax.apply_updates(state.meta_params, updates)

        def keep(new, old):
            return jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)

        new_state = MetaState(
            step=state.step + 1,
            meta_params=keep(meta_params, state.meta_params),
            meta_opt_state=keep(meta_opt_state, state.meta_opt_state),
            units=keep(units, state.units),
            nonfinite=state.nonfinite + (~finite).astype(jnp.int32),
        )
        metrics = {**metrics, "finite": finite, "meta_grad_norm": optax.tree.norm(grad)}
        return new_state, metrics
