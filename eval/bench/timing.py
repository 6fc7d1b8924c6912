"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import jax


def time_fn(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of `fn()`, blocking on its JAX outputs; compile runs in warmup."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


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
