"""optim4rl: learned optimizers for reinforcement learning as optax transforms.

import optim4rl, optax
tx = optim4rl.optim4rl(3e-4)                              # shipped gridworld-trained Optim4RL
tx = optim4rl.from_spec({"context_encoder": "adamw(learning_rate=1e-5)",
                         "default": "optim4rl(learning_rate=3e-4)"})   # per-module optimizers

The names below are imported on first use (PEP 562), so `import optim4rl` and its command-line
plumbing (`optim4rl.runtime.cli`) load no JAX: `--help` of every command stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optim4rl._lazy import lazy_getattr

_EXPORTS = {
    "optim4rl.checkpoint": (
        "CheckpointError",
        "load_meta_params",
        "pretrained",
        "pretrained_names",
        "save_meta_params",
    ),
    "optim4rl.networks": ("KINDS", "hidden_size", "init_meta_params", "num_meta_params"),
    "optim4rl.specs": (
        "ModuleSpecs",
        "SpecError",
        "assign",
        "from_spec",
        "label_params",
        "module_specs",
        "param_paths",
        "parse_assignment",
        "parse_spec",
        "per_module",
    ),
    "optim4rl.transforms": (
        "LearnedOptimizerState",
        "learned",
        "optim4rl",
        "scale_by_l2lgd2",
        "scale_by_learned",
        "scale_by_lin",
        "scale_by_optim4rl",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "KINDS",
    "CheckpointError",
    "LearnedOptimizerState",
    "ModuleSpecs",
    "SpecError",
    "assign",
    "from_spec",
    "hidden_size",
    "init_meta_params",
    "label_params",
    "learned",
    "load_meta_params",
    "module_specs",
    "num_meta_params",
    "optim4rl",
    "param_paths",
    "parse_assignment",
    "parse_spec",
    "per_module",
    "pretrained",
    "pretrained_names",
    "save_meta_params",
    "scale_by_l2lgd2",
    "scale_by_learned",
    "scale_by_lin",
    "scale_by_optim4rl",
]


__getattr__ = lazy_getattr(__name__, _WHERE, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


if TYPE_CHECKING:  # what static tools see; at run time the names load lazily
    from optim4rl.checkpoint import (
        CheckpointError,
        load_meta_params,
        pretrained,
        pretrained_names,
        save_meta_params,
    )
    from optim4rl.networks import KINDS, hidden_size, init_meta_params, num_meta_params
    from optim4rl.specs import (
        ModuleSpecs,
        SpecError,
        assign,
        from_spec,
        label_params,
        module_specs,
        param_paths,
        parse_assignment,
        parse_spec,
        per_module,
    )
    from optim4rl.transforms import (
        LearnedOptimizerState,
        learned,
        optim4rl,
        scale_by_l2lgd2,
        scale_by_learned,
        scale_by_lin,
        scale_by_optim4rl,
    )
