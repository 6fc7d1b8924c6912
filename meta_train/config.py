"""Meta-training configuration: a frozen dataclass with the paper's values, and named presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from meta_train import envs
from optim4rl import KINDS

# Per-task reward scaling of the paper (spec section 2), applied to the units' rewards.
PAPER_REWARD_SCALE = {
    "small_dense_short": 1e3,
    "small_dense_long": 1e2,
    "big_sparse_short": 1e2,
    "big_sparse_long": 1e1,
    "big_dense_short": 1e1,
    "big_dense_long": 1.0,
}


@dataclass(frozen=True)
class MetaTrainConfig:
    """Pipeline training of a learned optimizer (Optim4RL spec section 2); defaults are the paper's.

    units_per_task: n training units per task (agent params, optimizer hidden state, env).
    reset_interval: m; unit j is re-initialised before meta-step t when t mod m == r_j, with
      r = int(linspace(0, m - 1, n)); `pipeline=False` gives all units r_j = 0 (same age).
    inner_steps: K learned-optimizer updates per meta-step; the meta-loss is the A2C loss on a
      (K+1)-th rollout of `rollout_len` steps.
    agent_lr: per-task learning rate of the learned update (-agent_lr * direction).
    reward_scale: per-task reward multiplier of the units ({} = 1 everywhere).
    task_grad_norm: each task's meta-gradient is rescaled to this global norm (None: off).
    meta_clip: global-norm clip of the averaged meta-gradient (None: off).
    remat: recompute each inner update in the backward pass (True), or store its activations and
      unroll the K updates (False, faster where memory allows); None: chosen by `pipeline.
      residual_bytes` against the device's memory.
    """

    tasks: tuple[str, ...] = envs.GRIDWORLD_TASKS
    units_per_task: int = 512
    reset_interval: int = 72
    pipeline: bool = True
    inner_steps: int = 4
    rollout_len: int = 20
    gamma: float = 0.995
    lam: float = 0.95
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    agent_lr: float = 1e-3
    reward_scale: dict = field(default_factory=lambda: dict(PAPER_REWARD_SCALE))
    kind: str = "optim4rl"
    grad_clip: float | None = 1.0
    meta_lr: float = 1e-3
    task_grad_norm: float | None = 0.5
    meta_clip: float | None = 1.0
    meta_steps: int = 585
    seed: int = 0
    checkpoint_every: int = 50
    max_nonfinite: int = 10
    remat: bool | None = None

    def __post_init__(self):
        if not self.tasks:
            raise ValueError("tasks: give at least one task")
        for task in self.tasks:
            envs.check_task(task)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks: each task once, got {self.tasks}")
        positive = ("units_per_task", "reset_interval", "inner_steps", "rollout_len", "meta_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("checkpoint_every", "max_nonfinite"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("agent_lr", "meta_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown learned optimizer {self.kind!r}; known: {KINDS}")
        unknown = set(self.reward_scale) - set(envs.TASKS)
        if unknown:
            raise ValueError(f"reward_scale: unknown tasks {sorted(unknown)}")

    def scale_for(self, task: str) -> float:
        return float(self.reward_scale.get(task, 1.0))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MetaTrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(names)}")
        data = dict(data)
        if "tasks" in data:
            data["tasks"] = tuple(data["tasks"])
        return cls(**data)


PRESETS: dict[str, MetaTrainConfig] = {
    "paper": MetaTrainConfig(),
    # 2 CPU cores, about 25 minutes. The two small maps only: a big-map agent has 15x the
    # parameters (Conv -> Dense 2240x32), and 16 units on all six maps took 68 s per meta-step here.
    # No reward scaling, so the optimizer sees the gradients plain A2C produces; agent lr 1e-2, where
    # tuned Adam is best on these maps, so the units learn within their lifetime. m = 256
    # meta-steps = 1,024 updates: units live as long as the cpu evaluation's agents (1,000 updates).
    "cpu": MetaTrainConfig(
        tasks=("small_dense_short", "small_dense_long"),
        units_per_task=32,
        reset_interval=256,
        agent_lr=1e-2,
        reward_scale={},
        meta_steps=600,
        checkpoint_every=25,
    ),
    # The release's Catch meta-training (configs/meta_rl_catch.json): 64 units, reset interval 32,
    # agent lr 1e-3, no agent-gradient clip, meta Adam after a global-norm clip of 0.5 (its
    # `grad_norm`; no per-task rescale, `max_norm` -1), 5e5 env steps = 78 meta-steps of 64 units x
    # 20 steps x 5 rollouts. Meta-lr 1e-3 from the release's sweep {1e-4 ... 1e-2}.
    "catch": MetaTrainConfig(
        tasks=("catch",),
        units_per_task=64,
        reset_interval=32,
        agent_lr=1e-3,
        reward_scale={},
        grad_clip=None,
        task_grad_norm=None,
        meta_clip=0.5,
        meta_steps=78,
        checkpoint_every=13,
    ),
    "smoke": MetaTrainConfig(
        tasks=("small_dense_short", "big_sparse_short"),
        units_per_task=4,
        reset_interval=2,
        reward_scale={},
        meta_steps=3,
        checkpoint_every=1,
    ),
}


def preset(name: str, **overrides) -> MetaTrainConfig:
    """A named preset with some fields replaced; clear errors for unknown names and keys."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(MetaTrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(names)}")
    return dataclasses.replace(PRESETS[name], **overrides)
