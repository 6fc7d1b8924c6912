"""RESeL configuration: a frozen dataclass whose defaults are the paper's, and presets.

`paper(env)` applies the values of the authors' launch scripts for the task's suite (where they
differ from the paper's Table 2, docs/resel.md names both); `cpu(env)` scales the same algorithm
down for 2 CPU cores (narrower networks, smaller SSM state and batch, fewer steps).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import optim4rl
from optim4rl.specs import assign, parse_spec
from resel.networks import NetConfig

ADAMW = "adamw(learning_rate={lr}, weight_decay=0.0)"


def adamw(lr: float) -> str:
    """The paper's optimizer spec: AdamW, weight decay 0, no gradient clipping."""
    return ADAMW.format(lr=lr)


def module_optims(lr_ce: float, lr_other: float) -> optim4rl.ModuleSpecs:
    """Per-module specs in optim4rl's canonical form ((pattern, spec), ...), first match wins:
    the context encoder, then the rest."""
    return (("context_encoder", adamw(lr_ce)), ("default", adamw(lr_other)))


ENCODER_MODULES = ("context_encoder", "pre_encoder")


def active_module_optims(specs: optim4rl.ModuleSpecs, encoder: str) -> optim4rl.ModuleSpecs:
    """The per-module specs that address parameters of a network with this encoder.

    Rule: with encoder "none" the networks have no `context_encoder` / `pre_encoder` modules, so
    entries whose pattern is exactly one of those names are dropped (the presets name the context
    encoder, and one config must serve every encoder). Any other pattern that matches no parameter,
    e.g. "context_encoder/Dense_0", stays and is an error when the optimizer is initialised.
    """
    specs = optim4rl.module_specs(specs)
    if encoder != "none":
        return specs
    return tuple((p, s) for p, s in specs if p not in ENCODER_MODULES)


@dataclass(frozen=True)
class Config:
    """RESeL hyperparameters (defaults: Table 2's "other tasks" column; `paper(env)` per suite)."""

    net: NetConfig = field(default_factory=NetConfig)
    total_steps: int = 1_500_000
    warmup_steps: int = 5_000  # uniform-random actions before learning starts
    env_steps_per_update: int = 1  # one gradient step per environment step
    policy_every: int = 2  # policy (and alpha) update every 2 critic updates
    batch_size: int = 1_000  # transitions (whole trajectories drawn until reached)
    max_trajs_per_batch: int = 64
    batch_rows: int | None = None  # None: ceil(batch_size / episode length) (see buffer)
    packed: bool = True  # packed rows with k_zero zero steps; False: one trajectory per row
    k_zero: int | None = None  # None: conv kernel + 2
    buffer_size: int | None = None  # rows in the replay ring; None: max_transitions (see below)
    max_transitions: int = 1_000_000  # the release's replay capacity; the oldest are evicted
    gamma: float = 0.99
    tau: float = 0.005  # target <- (1 - tau) target + tau online
    target_entropy: float | None = None  # None: -|A|
    init_alpha: float = 1.0  # continuous actions: alpha is tuned from here (release: log alpha 0)
    log_alpha_max: float | None = 1.0  # release: log alpha clamped to <= 1 after each alpha step
    discrete_alpha: float = 0.2  # categorical policies: fixed alpha (release: sac_alpha, no tuning)
    q_guard: bool = True  # clamp next-state values to a running [min, max] of past targets
    # decay of the guard's range for continuous actions (discrete: 1, no decay, as the release)
    q_guard_decay: float = 1.0 - 1e-3
    use_reward: bool = False  # last reward as an input (classic meta-RL tasks)
    # training episodes start the policy's Mamba/GRU state at U[-1, 1] (release); evaluation at 0
    random_initial_state: bool = True
    policy_optim: optim4rl.ModuleSpecs = module_optims(1e-5, 3e-4)
    critic_optim: optim4rl.ModuleSpecs = module_optims(1e-5, 1e-3)
    alpha_optim: str = "adamw(learning_rate=1e-4, weight_decay=0.01)"  # torch's AdamW default
    eval_every: int = 1_000
    eval_episodes: int = 5
    checkpoint_every: int = 10_000  # env steps (rounded to evaluation points)

    def __post_init__(self):
        if self.policy_every < 1 or self.env_steps_per_update < 1:
            raise ValueError("policy_every and env_steps_per_update must be >= 1")
        cycle = self.policy_every * self.env_steps_per_update  # env steps of one update cycle
        for name in ("eval_every", "warmup_steps"):
            if getattr(self, name) % cycle:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be a multiple of policy_every * "
                    f"env_steps_per_update = {cycle}"
                )
        if not 0.0 < self.q_guard_decay <= 1.0:
            raise ValueError(f"q_guard_decay must be in (0, 1], got {self.q_guard_decay}")
        for name in ("policy_optim", "critic_optim"):  # canonical form, checked (SpecError)
            object.__setattr__(self, name, optim4rl.module_specs(getattr(self, name)))

    @property
    def zero_steps(self) -> int:
        return self.net.conv_kernel + 2 if self.k_zero is None else self.k_zero

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)


def from_dict(d: dict[str, Any]) -> Config:
    """Inverse of `Config.to_dict`; unknown keys are an error that names them."""
    d = dict(d)
    net = d.pop("net", {})
    _check_keys(net, NetConfig, "net")
    _check_keys(d, Config, "config")
    return Config(net=NetConfig(**net), **d)


def _check_keys(d: dict, cls, what: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; known: {sorted(known)}")


def _suite(env_name: str) -> str:
    name = env_name.lower()
    if "key" in name and "door" in name:
        return "credit"
    if name.endswith(("-p", "-v")):
        return "pomdp"
    if name.endswith("-gravity"):
        return "gravity"
    if name in ("antdir", "cheetahdir", "halfcheetahvel", "wind"):
        return "meta"
    if name.startswith(("pendulum", "cartpole", "memorychain")):
        return "control"  # Table 2's "other tasks" column; no launch script in the release
    return "mdp"


# Per suite, the release's launch scripts (gen_tmuxp_mamba_{pomdp,dynamics_rnd,mujoco,meta}.py):
# (context-encoder lr, policy lr, critic lr), batch (transitions), total env steps (the 5,000
# random warm-up steps + iterations x 1,000). The paper's Table 2 differs for the gravity suite
# (1e-5 / 3e-4 / 1e-3, batch 1000) and gives batches of 2000 / 1000 where the scripts pass
# 1999 / 999 (the same trajectory counts at episodes of 1000 steps); docs/resel.md lists both.
SMALL_LRS, OTHER_LRS = (2e-6, 6e-5, 2e-4), (1e-5, 3e-4, 1e-3)
SUITES: dict[str, dict[str, Any]] = {
    "pomdp": {"lrs": OTHER_LRS, "batch_size": 1_999, "total_steps": 1_505_000},
    "gravity": {"lrs": SMALL_LRS, "batch_size": 999, "total_steps": 2_005_000},
    "mdp": {"lrs": SMALL_LRS, "batch_size": 1_999, "total_steps": 5_005_000},
    "meta": {"lrs": SMALL_LRS, "batch_size": 999, "total_steps": 5_005_000, "use_reward": True},
    "control": {"lrs": OTHER_LRS},
    "credit": {"lrs": OTHER_LRS, "gamma": 0.9999, "discrete_alpha": 0.2},
}


def lr_kwargs(ce: float, policy: float, critic: float) -> dict[str, Any]:
    """`policy_optim` / `critic_optim` with one context-encoder lr for both (as the release)."""
    return {"policy_optim": module_optims(ce, policy), "critic_optim": module_optims(ce, critic)}


# per-task network architecture (NetConfig fields), kept by the cpu preset's narrower network:
# Key-to-Door (paper App. D.3.2) has no conv1d, a 3-layer MLP of width 256 before the Mamba block, and
# 4 Mamba blocks at the credit-assignment length 500 (1 otherwise)
TASK_NET: dict[str, dict[str, Any]] = {
    f"KeyToDoor-{n}": {"conv_kernel": 0, "ce_in_layers": 3, "n_blocks": 4 if n == 500 else 1}
    for n in (60, 120, 250, 500)
}


# the release's per-task exceptions, on the Brax stand-ins' names
TASK_OVERRIDES: dict[str, dict[str, Any]] = {
    # gen_tmuxp_mamba_pomdp.py
    "Ant-V": {"batch_size": 128, **lr_kwargs(1e-5, 5e-4, 5e-4)},
    "Walker2d-P": lr_kwargs(5e-6, 3e-4, 1e-3),
    # gen_tmuxp_mamba_mujoco.py
    "Hopper": {"target_entropy": 0.0},
    "HalfCheetah": lr_kwargs(*(5 * lr for lr in SMALL_LRS)),
    # gen_tmuxp_mamba_dynamics_rnd.py
    "Hopper-Gravity": {"target_entropy": 0.0},
}


def paper(env_name: str = "", **overrides: Any) -> Config:
    """The release's settings for the task's suite (`SUITES`) and its per-task exceptions
    (`TASK_OVERRIDES`, `TASK_NET`), then `overrides`."""
    kw = dict(SUITES[_suite(env_name)])
    kw.update(lr_kwargs(*kw.pop("lrs")))
    kw["net"] = NetConfig(**TASK_NET.get(env_name, {}))
    kw.update(TASK_OVERRIDES.get(env_name, {}))
    kw.update(overrides)
    return Config(**kw)


CPU_NET = NetConfig(
    pre_dim=32, ce_dim=64, ce_out=32, d_state=8, expand=2, dt_rank=4, conv_kernel=4, ffn_dim=64,
    tf_window=64, tf_heads=2, obs_embed=32, act_embed=32, hidden=64, n_critics=8,
)  # fmt: skip


# the cpu preset's context-encoder lr as a multiple of the paper's, per suite: chosen on
# Pendulum-V / -P (docs/resel.md), where 1e-5 barely moves the encoder in 25,000 updates; still
# below the heads' lrs, the method's defining choice
CPU_CE_LR_SCALE = {"pomdp": 10.0}


def _scale_ce_lr(specs: optim4rl.ModuleSpecs, factor: float) -> optim4rl.ModuleSpecs:
    """`specs` with the context encoder's AdamW learning rate multiplied by `factor`."""
    _, _, kwargs = parse_spec(dict(specs)["context_encoder"])
    return assign(specs, "context_encoder", adamw(kwargs["learning_rate"] * factor))


# the cpu preset's per-task exceptions, chosen by experiment (docs/resel.md): with velocities only,
# Pendulum needs the paper's one update per env step to reach -250 by 50k steps on every seed
# (at 1:2 two of six seeds did); the other tasks reach their targets at 1:2
CPU_TASK_OVERRIDES: dict[str, dict[str, Any]] = {"Pendulum-V": {"env_steps_per_update": 1}}


def cpu(env_name: str = "", **overrides: Any) -> Config:
    """Scaled down for 2 CPU cores: narrower networks, half the update rate, 50k steps, on the
    classic POMDPs a 10x context-encoder lr (`CPU_CE_LR_SCALE`), and `CPU_TASK_OVERRIDES`."""
    base = paper(env_name)
    kw: dict[str, Any] = dict(
        net=dataclasses.replace(CPU_NET, **TASK_NET.get(env_name, {})),
        total_steps=50_000,
        warmup_steps=2_000,
        env_steps_per_update=2,  # half the paper's update rate: 2 cores cannot afford 1:1
        batch_size=400,
        max_trajs_per_batch=16,
        checkpoint_every=5_000,
    )
    factor = CPU_CE_LR_SCALE.get(_suite(env_name))
    if factor is not None:
        kw["policy_optim"] = _scale_ce_lr(base.policy_optim, factor)
        kw["critic_optim"] = _scale_ce_lr(base.critic_optim, factor)
    kw.update(CPU_TASK_OVERRIDES.get(env_name, {}))
    kw.update(overrides)
    return dataclasses.replace(base, **kw)


PRESETS = {"paper": paper, "cpu": cpu}


def preset(name: str, env_name: str = "", **overrides: Any) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name](env_name, **overrides)
