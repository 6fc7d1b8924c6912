"""meta_train: the six Optim4RL gridworlds and Catch (gymnax API), the A2C inner agent, and
pipeline meta-training of learned optimizers (`python -m meta_train`, docs/meta_train.md)."""

from meta_train import envs
from meta_train.a2c import A2CConfig, make_train, make_train_fn
from meta_train.config import PRESETS, MetaTrainConfig, preset
from meta_train.pipeline import Pipeline, make_mesh
from meta_train.run import NonFiniteMetaGradient, train

__all__ = [
    "PRESETS",
    "A2CConfig",
    "MetaTrainConfig",
    "NonFiniteMetaGradient",
    "Pipeline",
    "envs",
    "make_mesh",
    "make_train",
    "make_train_fn",
    "preset",
    "train",
]
