"""meta_train: the six Optim4RL gridworlds and Catch (gymnax API), the A2C inner agent, and
pipeline meta-training of learned optimizers (`python -m meta_train`, docs/meta_train.md).

The names below are imported on first use (PEP 562), so `python -m meta_train --help` loads no JAX.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optim4rl._lazy import lazy_getattr

_WHERE = {
    "A2CConfig": "meta_train.a2c",
    "make_train": "meta_train.a2c",
    "make_train_fn": "meta_train.a2c",
    "PRESETS": "meta_train.config",
    "MetaTrainConfig": "meta_train.config",
    "preset": "meta_train.config",
    "Pipeline": "meta_train.pipeline",
    "make_mesh": "meta_train.pipeline",
    "NonFiniteMetaGradient": "meta_train.run",
    "train": "meta_train.run",
}

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


__getattr__ = lazy_getattr(__name__, _WHERE, globals())


if TYPE_CHECKING:  # what static tools see; at run time the names load lazily
    from meta_train import envs
    from meta_train.a2c import A2CConfig, make_train, make_train_fn
    from meta_train.config import PRESETS, MetaTrainConfig, preset
    from meta_train.pipeline import Pipeline, make_mesh
    from meta_train.run import NonFiniteMetaGradient, train
