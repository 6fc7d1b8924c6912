"""`python -m eval bench meta-train [--preset cpu] [--tasks ...] [--units N] [--simple]`.

Prints meta-iterations per second and agent env-steps per second of pipeline training, and the
ratio of one meta-iteration to plain A2C training of the same units with Adam (the same K updates
and the extra rollout + loss, no meta-gradient), both measured in this run. `--simple` adds the
same meta-gradient computed the simplest way (`simple_meta_gradient`: `jax.grad` through a
Python-unrolled K, no remat, no scan) and the speed-up of the pipeline's step over it.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import optax

from eval.bench import cli
from eval.bench.timing import host_allocator, median, ratio_text, time_interleaved
from meta_train.a2c import Agent, TrainState
from meta_train.config import PRESETS
from meta_train.pipeline import Pipeline, agent_config


def plain_a2c(config, units) -> callable:
    """Jitted: for every unit of every task, K Adam updates then one rollout and its loss."""
    agents = [Agent(agent_config(config, t)) for t in config.tasks]
    adam = optax.adam(config.agent_lr)

    def run(units, key):
        out = []
        for i, (agent, unit) in enumerate(zip(agents, units, strict=True)):

            def one(unit, key, agent=agent):
                def inner(state: TrainState, key):
                    traj, env = agent.rollout(state.params, state.env, key)
                    grads, _ = jax.grad(agent.loss, has_aux=True)(state.params, traj, env.obs)
                    updates, opt_state = adam.update(grads, state.opt_state, state.params)
                    return TrainState(
                        optax.apply_updates(state.params, updates), opt_state, env
                    ), None

                keys = jax.random.split(key, config.inner_steps + 1)
                state = TrainState(unit.params, adam.init(unit.params), unit.env)
                state, _ = jax.lax.scan(inner, state, keys[:-1])
                traj, env = agent.rollout(state.params, state.env, keys[-1])
                return agent.loss(state.params, traj, env.obs)[0]

            keys = jax.random.split(jax.random.fold_in(key, i), config.units_per_task)
            out.append(jax.vmap(one)(unit, keys).mean())
        return sum(out)

    return jax.jit(run)


def simple_meta_gradient(pipeline: Pipeline) -> callable:
    """Jitted (meta_params, units, key) -> per-task meta-gradients, the simplest way: `jax.grad`
    of the mean over units of the A2C loss after K learned updates written as a Python loop.

    The same function as `jax.grad(pipeline.task_loss)` per task with the same keys (tested), so
    the reference for the pipeline's remat + scan.
    """
    config = pipeline.config

    def task_loss(meta_params, units, agent, key):
        opt = pipeline._learned(meta_params)

        def unit_loss(unit, key):
            params, opt_state, env = unit
            keys = jax.random.split(key, config.inner_steps + 1)
            for k in range(config.inner_steps):
                traj, env = agent.rollout(params, env, keys[k])
                grads, _ = jax.grad(agent.loss, has_aux=True)(params, traj, env.obs)
                updates, opt_state = opt.update(jax.lax.stop_gradient(grads), opt_state, params)
                params = optax.apply_updates(params, updates)
            traj, env = agent.rollout(params, env, keys[-1])
            return agent.loss(params, traj, env.obs)[0]

        keys = jax.random.split(key, config.units_per_task)
        return jax.vmap(unit_loss)(units, keys).mean()

    def grads(meta_params, units, key):
        return [
            jax.grad(task_loss)(meta_params, u, agent, jax.random.fold_in(key, i))
            for i, (agent, u) in enumerate(zip(pipeline.agents, units, strict=True))
        ]

    return jax.jit(grads)


def main(argv: list[str]) -> int:
    args = cli.meta_train().parse_args(argv)
    config = PRESETS[args.preset]
    if args.tasks:
        config = replace(config, tasks=tuple(args.tasks.split(",")))
    if args.units:
        config = replace(config, units_per_task=args.units)

    pipeline = Pipeline(config)
    state = pipeline.init()
    key = jax.random.key(1)
    plain = plain_a2c(config, state.units)
    fns = {
        "meta": lambda: pipeline.step(state, key),
        "plain": lambda: plain(state.units, key),
    }
    if args.simple:
        simple = simple_meta_gradient(pipeline)
        fns["simple"] = lambda: simple(state.meta_params, state.units, key)
    times = time_interleaved(fns, repeats=args.repeats)
    meta_s, plain_s = median(times["meta"]), median(times["plain"])

    steps = (
        len(config.tasks) * config.units_per_task * (config.inner_steps + 1) * config.rollout_len
    )
    print(
        f"preset {args.preset}: {len(config.tasks)} tasks x {config.units_per_task} units, "
        f"K={config.inner_steps}, rollout {config.rollout_len}, device {jax.devices()[0].platform}, "
        f"{host_allocator()}; medians of {args.repeats} interleaved rounds, ratios within rounds"
    )
    print(
        f"meta-iteration        {meta_s * 1e3:10.1f} ms   {1 / meta_s:8.3f} meta-it/s   "
        f"{steps / meta_s:10.0f} env-steps/s"
    )
    print(f"plain A2C with Adam   {plain_s * 1e3:10.1f} ms   (same units, K updates + 1 rollout)")
    print(f"ratio meta-iteration / plain A2C: {ratio_text(times, 'meta', 'plain')}")
    if args.simple:
        simple_s = median(times["simple"])
        print(f"simplest meta-gradient {simple_s * 1e3:9.1f} ms   (jax.grad, unrolled K, no remat)")
        speedup = ratio_text(times, "simple", "meta")
        print(f"speed-up of the meta-iteration over the simplest way: {speedup}")
    return 0
