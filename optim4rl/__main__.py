"""`python -m optim4rl demo`: a small network trained with Optim4RL next to AdamW, both losses printed.

`python -m optim4rl list` names the shipped pretrained optimizers and their provenance.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from optim4rl.runtime.cli import (
    ArgumentParser,
    Command,
    dispatch,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    import jax
    import optax


def train_regression(tx: optax.GradientTransformation, steps: int, seed: int = 0) -> jax.Array:
    """Fit y = sin(3x) on [-1, 1] with a 64-64 tanh MLP; returns the loss at every step, (steps,)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.tanh(nn.Dense(64)(x))
            x = nn.tanh(nn.Dense(64)(x))
            return nn.Dense(1)(x)

    model = MLP()
    x = jnp.linspace(-1.0, 1.0, 256)[:, None]
    y = jnp.sin(3.0 * x)
    params = model.init(jax.random.key(seed), x)
    loss_fn = lambda p: jnp.mean((model.apply(p, x) - y) ** 2)

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    _, losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, steps))(params)
    return losses


def demo(steps: int, learning_rate: float) -> None:
    """Print the losses of both optimizers at five steps of the regression."""
    import jax
    import optax

    import optim4rl

    names = optim4rl.pretrained_names()
    if "gridworld" in names:
        meta_params, header = optim4rl.pretrained("gridworld")
        prov = header["provenance"]
        source = (
            f"pretrained 'gridworld' ({prov.get('meta_steps')} meta-steps, {header['created']})"
        )
    else:
        meta_params = optim4rl.init_meta_params(jax.random.key(0))
        source = "random initialisation (close to sign descent; no pretrained file shipped)"
    print(f"Optim4RL meta-parameters: {source}")
    runs = {
        f"adamw(lr={learning_rate:g})": optax.adamw(learning_rate, weight_decay=0.0),
        f"optim4rl(lr={learning_rate:g})": optim4rl.optim4rl(learning_rate, meta_params),
    }
    losses = {name: train_regression(tx, steps) for name, tx in runs.items()}
    print(f"{'step':>6} " + " ".join(f"{name:>22}" for name in losses))
    for t in sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps - 1}):
        print(f"{t:>6} " + " ".join(f"{float(v[t]):>22.5f}" for v in losses.values()))


def demo_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m optim4rl demo",
        description="Fit y = sin(3x) with a 64-64 tanh MLP, once with Optim4RL, once with AdamW.",
    )
    p.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps per run")
    p.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="learning rate of both"
    )
    return p


def demo_main(argv: list[str]) -> int:
    args = demo_parser().parse_args(argv)
    demo(args.steps, args.learning_rate)
    return 0


def list_main(argv: list[str]) -> int:
    import optim4rl

    ArgumentParser(
        prog="python -m optim4rl list",
        description="The shipped pretrained optimizers, their kind and their provenance.",
    ).parse_args(argv)
    for name in optim4rl.pretrained_names():
        _, header = optim4rl.pretrained(name)
        print(f"{name}: kind={header['kind']} created={header['created']}")
        for key, value in header["provenance"].items():
            print(f"  {key}: {value}")
        for amendment in header.get("amendments", []):
            print(f"  amended {amendment['date']}: {amendment['change']}")
    return 0


COMMANDS = {
    "demo": Command(
        "optim4rl.__main__:demo_main", "train a small regression net with Optim4RL and AdamW"
    ),
    "list": Command(
        "optim4rl.__main__:list_main", "the shipped pretrained optimizers and their provenance"
    ),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("python -m optim4rl", "Learned optimizers as optax transforms.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
