"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping

import jax


def time_fn(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of `fn()`, blocking on its JAX outputs; compile runs in warmup."""
    return median(time_interleaved({"fn": fn}, repeats=repeats, warmup=warmup)["fn"])


def time_interleaved(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    best_of: int = 1,
) -> dict[str, list[float]]:
    """Wall times in seconds of every `fn()` over `repeats` rounds, each round calling them in turn
    (compile runs in warmup), so that a shared machine's slow spells fall on all of them alike.

    `best_of` > 1 calls each fn that many times back to back within a round and keeps the fastest:
    its warm time (caches and thread pool hot), as an isolated benchmark measures it.
    Returns name -> its `repeats` times in round order; `round_ratios` compares two of them.
    """
    for _ in range(warmup):
        for fn in fns.values():
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            best = float("inf")
            for _ in range(best_of):
                start = time.perf_counter()
                jax.block_until_ready(fn())
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    return times


def median(xs: list[float]) -> float:
    """The median (mean of the middle two for an even count)."""
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def round_ratios(times: dict[str, list[float]], num: str, den: str) -> tuple[float, float, float]:
    """(median, min, max) over the rounds of times[num] / times[den], each ratio taken within one
    round of `time_interleaved`."""
    ratios = [a / b for a, b in zip(times[num], times[den], strict=True)]
    return median(ratios), min(ratios), max(ratios)


def ratio_text(times: dict[str, list[float]], num: str, den: str) -> str:
    """`round_ratios` as text: 'median x (min-max x)'."""
    return "{:.2f}x ({:.2f}-{:.2f}x)".format(*round_ratios(times, num, den))


def host_allocator() -> str:
    """The malloc this process runs on, as its environment chose it: a preloaded allocator (for
    jemalloc with its MALLOC_CONF), glibc with GLIBC_TUNABLES, or the system's default. XLA:CPU
    takes every call's buffers from it, and a meta-iteration's speed depends on it
    (docs/eval.md)."""
    for name in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        base = os.path.basename(name)
        if any(lib in base for lib in ("jemalloc", "tcmalloc", "mimalloc")):
            conf = os.environ.get("MALLOC_CONF") if "jemalloc" in base else None
            return f"{base} (LD_PRELOAD)" + (f", MALLOC_CONF={conf}" if conf else "")
    libc = platform.libc_ver()[0] or "system"
    tunables = os.environ.get("GLIBC_TUNABLES")
    return f"{libc} malloc" + (f", GLIBC_TUNABLES={tunables}" if tunables else " (default)")
