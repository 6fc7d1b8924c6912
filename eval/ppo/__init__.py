"""Brax PPO that takes any optax transform: `make_train(config, optimizer)(key)`."""

from eval.ppo.config import PRESETS, PPOConfig, preset
from eval.ppo.losses import gae, ppo_loss
from eval.ppo.train import PPO, TrainState, make_env, make_networks, make_ppo, make_train

__all__ = [
    "PPO",
    "PRESETS",
    "PPOConfig",
    "TrainState",
    "gae",
    "make_env",
    "make_networks",
    "make_ppo",
    "make_train",
    "ppo_loss",
    "preset",
]
