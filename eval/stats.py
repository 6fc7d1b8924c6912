"""Statistics of learning curves (numpy only): final and area-under-curve returns, mean +- standard
error, interquartile mean (IQM) with stratified bootstrap confidence intervals as in rliable
(Agarwal et al. 2021; re-implemented here in numpy, percentile intervals), normalised scores.

Shapes: a curve set is [runs, evals]; a score matrix is [runs, tasks] (runs = seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def final_return(curves: np.ndarray, last: int = 1) -> np.ndarray:
    """Mean of the last `last` evaluations of each run: [runs, evals] -> [runs]."""
    curves = np.asarray(curves, float)
    if not 1 <= last <= curves.shape[-1]:
        raise ValueError(f"last={last} must lie in [1, {curves.shape[-1]}] (number of evaluations)")
    return curves[..., -last:].mean(axis=-1)


def area_under_curve(steps: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoid area under each curve divided by the step range, i.e. the average return over
    training: (1 / (s_K - s_0)) sum_k (s_{k+1} - s_k)(R_k + R_{k+1}) / 2. [runs, evals] -> [runs]."""
    steps = np.asarray(steps, float)
    curves = np.asarray(curves, float)
    if steps.shape[-1] != curves.shape[-1] or steps.shape[-1] < 2:
        raise ValueError(f"steps {steps.shape} and curves {curves.shape} need >= 2 matching evals")
    widths = np.diff(steps)
    heights = 0.5 * (curves[..., 1:] + curves[..., :-1])
    return (widths * heights).sum(axis=-1) / (steps[-1] - steps[0])


def mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error std(ddof=1)/sqrt(n) (se = NaN for a single value)."""
    x = np.asarray(x, float).ravel()
    if x.size == 0:
        return float("nan"), float("nan")
    se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
    return float(x.mean()), float(se)


def iqm(x: np.ndarray) -> float:
    """Interquartile mean: mean of the values left after cutting floor(n/4) from each end of the
    sorted values (scipy.stats.trim_mean(x, 0.25) over all entries, as rliable computes it)."""
    x = np.sort(np.asarray(x, float).ravel())
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def _batched_iqm(x: np.ndarray) -> np.ndarray:
    """IQM of each row of x [reps, n]."""
    x = np.sort(x, axis=-1)
    cut = int(0.25 * x.shape[-1])
    return x[:, cut : x.shape[-1] - cut].mean(axis=-1)


def _resample(scores: list[np.ndarray], reps: int, rng: np.random.Generator) -> np.ndarray:
    """[reps, sum_t n_t]: each stratum (task) resampled with replacement to its own size n_t."""
    if len({s.size for s in scores}) == 1:  # equal strata: one draw, as rliable does it
        matrix = np.stack(scores, axis=1)
        runs, tasks = matrix.shape
        idx = rng.integers(0, runs, size=(reps, runs, tasks))
        return np.take_along_axis(matrix[None], idx, axis=1).reshape(reps, -1)
    return np.concatenate([s[rng.integers(0, s.size, size=(reps, s.size))] for s in scores], 1)


def stratified_bootstrap_ci(
    scores: np.ndarray | Sequence[np.ndarray],
    statistic: str | Callable[[np.ndarray], float] = "iqm",
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile confidence interval of `statistic` over scores [runs, tasks],
    or over a list of per-task score vectors [n_t] when tasks hold different numbers of runs.

    Each bootstrap replicate resamples runs with replacement independently within every task
    (the strata), keeping the number of runs per task; the statistic of the resampled scores is
    taken over all their entries (so with unequal n_t a task weighs in proportion to its runs).
    "iqm" and "mean" are vectorised; a callable is applied per replicate.
    """
    if isinstance(scores, np.ndarray) or not isinstance(scores, Sequence):
        matrix = np.asarray(scores, float)
        matrix = matrix[:, None] if matrix.ndim == 1 else matrix
        strata = [matrix[:, t] for t in range(matrix.shape[1])]
    else:
        strata = [np.asarray(s, float).ravel() for s in scores]
    if not strata or min(s.size for s in strata) < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"need >= 1 run per task and 0 < confidence < 1 (got {[s.size for s in strata]}, "
            f"{confidence})"
        )
    pooled = np.concatenate(strata)
    resampled = _resample(strata, reps, np.random.default_rng(seed))
    if statistic == "iqm":
        point, stats = iqm(pooled), _batched_iqm(resampled)
    elif statistic == "mean":
        point, stats = float(pooled.mean()), resampled.mean(axis=-1)
    elif callable(statistic):
        point = float(statistic(pooled))
        stats = np.array([statistic(r) for r in resampled])
    else:
        raise ValueError(f"unknown statistic {statistic!r}; use 'iqm', 'mean' or a callable")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return point, float(low), float(high)


def mean_ci(
    curves: np.ndarray, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs and its percentile bootstrap interval at every evaluation:
    [runs, evals] -> (mean, low, high), each [evals]. One run gives low = high = mean."""
    curves = np.asarray(curves, float)
    idx = np.random.default_rng(seed).integers(0, curves.shape[0], size=(reps, curves.shape[0]))
    means = curves[idx].mean(axis=1)  # [reps, evals]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return curves.mean(axis=0), low, high


def normalize(scores: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """(score - low) / (high - low), broadcast over tasks (last axis): 0 = low ref, 1 = high ref."""
    low = np.asarray(low, float)
    high = np.asarray(high, float)
    if np.any(high == low):
        raise ValueError("normalisation references must differ (high == low for some task)")
    return (np.asarray(scores, float) - low) / (high - low)
