"""`python -m eval bench ppo`: training env steps/s of eval.ppo with Adam and with Optim4RL, and of
Brax's own PPO (`brax.training.agents.ppo.train`, Adam hard-coded), same task and sizes, one run.

Evaluation and compilation are excluded on both sides: ours times one jitted training epoch, Adam's
and Optim4RL's in interleaved rounds (`time_interleaved`; the ratio is the median of the rounds'
ratios); Brax's reports `training/sps` per epoch, of which the last (compiled) epoch is used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from eval.bench import cli
from eval.bench.timing import host_allocator, median, ratio_text, time_interleaved
from eval.ppo import make_ppo, preset


def _optim4rl_optimizer(learning_rate: float) -> tuple[optax.GradientTransformation, str]:
    """The shipped gridworld Optim4RL if present, else random meta-parameters (same cost)."""
    import optim4rl

    try:
        return optim4rl.optim4rl(learning_rate), "optim4rl (pretrained gridworld)"
    except Exception:  # noqa: BLE001 - missing or unreadable checkpoint: same cost, say so
        meta_params = optim4rl.init_meta_params(jax.random.key(0))
        return optim4rl.optim4rl(learning_rate, meta_params), "optim4rl (random meta-params)"


def ours_epoch(config, optimizer) -> Callable[[], jax.Array]:
    """One jitted training epoch (rollouts + SGD) of eval.ppo with `optimizer`, ready to time."""
    ppo = make_ppo(config, optimizer)
    ts, env_state = jax.jit(ppo.init)(jax.random.key(0))
    epoch = jax.jit(ppo.train_epoch)
    key = jax.random.key(1)
    return lambda: epoch(ts, env_state, key)[2]


def brax_steps_per_second(config, learning_rate: float) -> float:
    """Brax's PPO on the same config; its own `training/sps` of the last epoch (compiled)."""
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as brax_ppo

    from eval.ppo import make_env

    if not hasattr(jax, "device_put_replicated") or _is_deprecated_stub():
        # brax 0.14.2 calls jax.device_put_replicated, removed in jax 0.10: equivalent shim.
        jax.device_put_replicated = lambda x, devices: jax.tree.map(
            lambda a: jnp.stack([a] * len(devices)), x
        )
    sps: list[float] = []
    brax_ppo.train(
        make_env(config),
        num_timesteps=3 * config.training_steps_per_epoch * config.env_steps_per_training_step,
        num_evals=4,
        episode_length=config.episode_length,
        action_repeat=config.action_repeat,
        num_envs=config.num_envs,
        batch_size=config.batch_size,
        num_minibatches=config.num_minibatches,
        num_updates_per_batch=config.num_updates_per_batch,
        unroll_length=config.unroll_length,
        learning_rate=learning_rate,
        entropy_cost=config.entropy_cost,
        discounting=config.discounting,
        gae_lambda=config.gae_lambda,
        clipping_epsilon=config.clipping_epsilon,
        reward_scaling=config.reward_scaling,
        normalize_observations=config.normalize_observations,
        num_eval_envs=config.num_eval_envs,
        network_factory=functools.partial(
            ppo_networks.make_ppo_networks,
            policy_hidden_layer_sizes=config.policy_hidden_layer_sizes,
            value_hidden_layer_sizes=config.value_hidden_layer_sizes,
        ),
        progress_fn=lambda step, metrics: (
            sps.append(metrics["training/sps"]) if "training/sps" in metrics else None
        ),
    )
    return sps[-1]


def _is_deprecated_stub() -> bool:
    try:
        jax.device_put_replicated  # noqa: B018
    except AttributeError:
        return True
    return False


def main(argv: list[str]) -> int:
    args = cli.ppo().parse_args(argv)

    overrides = {"env": args.env}
    if args.num_envs is not None:
        overrides.update(num_envs=args.num_envs, batch_size=args.num_envs)
    base = preset(args.preset, **overrides)
    config = base.replace(
        num_timesteps=args.steps_per_epoch * base.env_steps_per_training_step, num_evals=2
    )
    print(
        f"task {config.env} ({config.backend}), {config.num_envs} envs, "
        f"{config.env_steps_per_training_step} env steps per training step, "
        f"{config.training_steps_per_epoch} training steps timed, backend {jax.default_backend()}, "
        f"{host_allocator()}"
    )
    tx, name = _optim4rl_optimizer(args.learning_rate)
    epochs = {
        "eval.ppo + adam": ours_epoch(config, optax.adam(args.learning_rate)),
        f"eval.ppo + {name}": ours_epoch(config, tx),
    }
    times = time_interleaved(epochs, repeats=args.repeats)
    steps = config.training_steps_per_epoch * config.env_steps_per_training_step
    rows = [(label, steps / median(t)) for label, t in times.items()]
    if not args.skip_brax:
        rows.append(("brax ppo.train (adam)", brax_steps_per_second(config, args.learning_rate)))
    baseline = rows[0][1]
    print(f"{'variant':<42} {'env steps/s':>12} {'ratio':>7}")
    for label, sps in rows:
        print(f"{label:<42} {sps:>12,.0f} {sps / baseline:>7.2f}")
    ratio = ratio_text(times, f"eval.ppo + {name}", "eval.ppo + adam")
    print(f"epoch time, optim4rl / adam, median over {args.repeats} interleaved rounds: {ratio}")
    return 0
