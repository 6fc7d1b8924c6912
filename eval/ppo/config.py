"""PPO configuration: the Optim4RL paper's Brax settings as defaults, plus a `cpu` preset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PPOConfig:
    """Brax PPO hyperparameters (Optim4RL paper, ant; Brax's own PPO defaults otherwise).

    One training step collects `batch_size * num_minibatches` unrolls of `unroll_length` steps,
    `num_envs` at a time, then makes `num_updates_per_batch` passes of `num_minibatches` updates.
    The optimizer (and so the learning rate) is not part of this config: `make_train` takes any
    optax transform.
    """

    env: str = "ant"
    backend: str = "spring"
    num_timesteps: int = 100_000_000
    episode_length: int = 1000
    action_repeat: int = 1
    num_envs: int = 4096
    batch_size: int = 2048
    unroll_length: int = 5
    num_minibatches: int = 32
    num_updates_per_batch: int = 4
    clipping_epsilon: float = 0.3
    entropy_cost: float = 1e-2
    vf_loss_coefficient: float = 0.5
    discounting: float = 0.97
    gae_lambda: float = 0.95
    reward_scaling: float = 10.0
    normalize_observations: bool = True
    normalize_advantage: bool = True
    policy_hidden_layer_sizes: tuple[int, ...] = (32, 32, 32, 32)
    value_hidden_layer_sizes: tuple[int, ...] = (256, 256, 256, 256, 256)
    num_evals: int = 10
    num_eval_envs: int = 128

    def __post_init__(self) -> None:
        positive = (
            "num_timesteps episode_length action_repeat num_envs batch_size unroll_length "
            "num_minibatches num_updates_per_batch num_evals num_eval_envs"
        )
        for name in positive.split():
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if (self.batch_size * self.num_minibatches) % self.num_envs:
            raise ValueError(
                f"PPOConfig: batch_size * num_minibatches ({self.batch_size * self.num_minibatches})"
                f" must be a multiple of num_envs ({self.num_envs})"
            )
        if not 0.0 <= self.discounting <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError("PPOConfig: discounting and gae_lambda must lie in [0, 1]")

    @property
    def env_steps_per_training_step(self) -> int:
        return self.batch_size * self.num_minibatches * self.unroll_length * self.action_repeat

    @property
    def training_steps_per_epoch(self) -> int:
        """Training steps between two evaluations (evaluation also runs once before training)."""
        epochs = max(self.num_evals - 1, 1)
        return max(-(-self.num_timesteps // (epochs * self.env_steps_per_training_step)), 1)

    def replace(self, **changes: Any) -> PPOConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, PPOConfig] = {
    "paper": PPOConfig(),
    # Minutes on 2 CPU cores: a fast spring task, 64 envs, 8 short unrolls per update.
    "cpu": PPOConfig(
        env="inverted_pendulum",
        num_timesteps=300_000,
        num_envs=64,
        batch_size=64,
        num_minibatches=8,
        num_updates_per_batch=4,
        num_evals=11,
        num_eval_envs=16,
        value_hidden_layer_sizes=(64, 64),
    ),
}


def preset(name: str, **overrides: Any) -> PPOConfig:
    """`PRESETS[name]` with `overrides` applied; unknown names and keys raise a clear error."""
    if name not in PRESETS:
        raise ValueError(f"unknown PPO preset {name!r}; available: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(PPOConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown PPOConfig key(s) {unknown}; valid keys: {', '.join(sorted(fields))}"
        )
    for key in ("policy_hidden_layer_sizes", "value_hidden_layer_sizes"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return PRESETS[name].replace(**overrides)
