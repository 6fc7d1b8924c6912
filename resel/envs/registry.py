"""Name -> task registry: `make(name, **options) -> (env, params)`, `names()`, `register`.

The built-in tasks are registered by `resel.envs.suites`, which holds their factories."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resel.envs.core import Environment
from resel.envs.wrappers import ObserveReward


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


def canonical_name(name: str) -> str:
    """The registered spelling of task `name`: itself, or the one task equal to it up to case
    (`pendulum-p` -> `Pendulum-P`). ValueError with close matches for an unknown name."""
    if name in _REGISTRY:
        return name
    folded = {n.lower(): n for n in _REGISTRY}
    same = [n for n in _REGISTRY if n.lower() == name.lower()]
    if len(same) == 1:
        return same[0]
    if same:
        raise ValueError(f"task name {name!r} is ambiguous: {', '.join(same)}")
    close = difflib.get_close_matches(name.lower(), list(folded), n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(folded[c]) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown task {name!r}{hint} (`python -m resel envs` lists all {len(_REGISTRY)} tasks)"
    )


def _entry(name: str) -> Entry:
    return _REGISTRY[canonical_name(name)]


def make(name: str, *, observe_reward: bool = False, **options: Any) -> tuple[Environment, Any]:
    """Build task `name` (any case, see `canonical_name`) and its default params.

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
    env.name = entry.name
    env.family = entry.family
    return env, env.default_params


def takes(name: str, option: str) -> bool:
    """Whether task `name`'s factory takes `option` (e.g. "split", "seed")."""
    return option in inspect.signature(_entry(name).factory).parameters


@functools.cache
def heldout_params(name: str, seed: int | None = None) -> Any | None:
    """Params of task `name`'s held-out task set (its `split="test"`, of the split that `seed`
    draws where the task takes one), or None when it has none.

    Runs on such a task train on the training set and report returns on this one."""
    if not takes(name, "split"):
        return None
    return make(name, split="test", **({} if seed is None else {"seed": seed}))[1]
