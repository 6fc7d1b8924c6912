"""Name -> task registry: `make(name, **options) -> (env, params)`, `names()`."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resel.envs import classic
from resel.envs.core import Environment
from resel.envs.wrappers import ObservationMask, ObserveReward


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    factory: Callable[..., Environment]


_REGISTRY: dict[str, Entry] = {}

FAMILIES = ("classic", "locomotion", "gravity", "meta", "credit_assignment")


def register(name: str, family: str, factory: Callable[..., Environment]) -> None:
    """Add a task; `factory(**options)` builds the environment."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = Entry(name, family, factory)


def names(family: str | None = None) -> list[str]:
    """All registered task names (of one family when given), in registration order."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    return [e.name for e in _REGISTRY.values() if family is None or e.family == family]


def family_of(name: str) -> str:
    return _entry(name).family


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"unknown task {name!r}{hint} (resel.envs.names() lists all {len(_REGISTRY)} tasks)"
        )
    return _REGISTRY[name]


def make(name: str, *, observe_reward: bool = False, **options: Any) -> tuple[Environment, Any]:
    """Build task `name` and its default params.

    `observe_reward=True` appends the previous reward to observations (see `ObserveReward`).
    Other options go to the task (e.g. `backend=`, `split=`, `episode_length=`); an option the
    task does not take is an error that lists the ones it does.
    """
    entry = _entry(name)
    accepted = inspect.signature(entry.factory).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(sorted(accepted)) or "none"
        raise ValueError(f"task {name!r} does not take option(s) {unknown}; it takes: {allowed}")
    env = entry.factory(**options)
    if observe_reward:
        env = ObserveReward(env)
    env.name = name
    env.family = entry.family
    return env, env.default_params


def _occluded(base: Callable[..., Environment], layout: dict[str, tuple[int, ...]], part: str):
    hidden = {"P": "velocities (positions only)", "V": "positions (velocities only)"}[part]

    def factory(**options):
        return ObservationMask(base(**options), layout[part], hidden=hidden)

    factory.__signature__ = inspect.signature(base)
    return factory


def _register_classic() -> None:
    for label, base in (("Pendulum", classic.pendulum), ("CartPole", classic.cartpole)):
        register(label, "classic", base)
        for part in ("P", "V"):
            factory = _occluded(base, classic.OBS_LAYOUTS[label], part)
            register(f"{label}-{part}", "classic", factory)
    register("MemoryChain", "credit_assignment", classic.memory_chain)


_register_classic()
