"""How reports print numbers: 3 significant figures, mean ± s.e., [low, high] intervals, seed lists.

One set for every report (eval.report.tables, meta_train.report): a number that is missing (None)
or not finite prints as NONE ("—"), and rounding residue near 0 (a floor's own normalised mean,
-3.47e-18) prints as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

NONE = "—"  # what a missing or non-finite number prints as


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def g3(x: float | None) -> str:
    """x with 3 significant figures ("0.0123", "1.23e+04"); NONE where x is None or not finite;
    rounded to 12 decimals first, so that residue such as -3.47e-18 prints as 0."""
    return f"{round(x, 12) + 0.0:.3g}" if _finite(x) else NONE


def pm(mean: float | None, se: float | None) -> str:
    """mean ± s.e. as "0.973 ± 0.0231" (`g3` each); the mean alone where se is None or not
    finite."""
    return f"{g3(mean)} ± {g3(se)}" if _finite(se) else g3(mean)


def bracket(low: float | None, high: float | None) -> str:
    """An interval as "[-0.0798, 0.068]" (`g3` each end); NONE where either end is None or not
    finite."""
    return f"[{g3(low)}, {g3(high)}]" if _finite(low) and _finite(high) else NONE


def seed_list(seeds: Iterable[int]) -> str:
    """Sorted seeds, each run of 3 or more consecutive ones as "first..last": "0..7",
    "1000..1003", "3, 5", "0..3, 5, 7"."""
    seeds = sorted(int(s) for s in seeds)
    parts, i = [], 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        if j > i + 1:
            parts.append(f"{seeds[i]}..{seeds[j]}")
        else:
            parts += map(str, seeds[i : j + 1])
        i = j + 1
    return ", ".join(parts)
