"""Statistics of runs (numpy and scipy), shared by `python -m eval` and `python -m meta_train`.

- the one score: `final_return` of a run's score curve (held past divergence, `hold`);
- the one normalisation: `normalize`, random policy = 0, tuned reference (Adam) = 1;
- selection: `select`, the candidate with the best mean score on the tuning seeds;
- intervals: Student-t for means and paired differences (`t_interval`, `paired_difference`),
  stratified percentile bootstrap for the IQM as in rliable (Agarwal et al. 2021), each checked by
  simulation at the seed count in use (`coverage`, `bootstrap_iqm_covers`);
- rliable's probability of improvement (`probability_of_improvement`);
- `simultaneous`: Bonferroni's per-interval level, so that a whole report's claims hold together.

Shapes: a curve set is [runs, evals]; a score matrix is [runs, tasks] (runs = seeds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy


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


def mean_ci(curves: np.ndarray, *, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean over runs and its Student-t interval at every evaluation (`t_interval` per column):
    [runs, evals] -> (mean, low, high), each [evals]. One run gives low = high = mean."""
    curves = np.asarray(curves, float)
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, mean, mean
    n = curves.shape[0]
    half = _scipy.t.ppf(0.5 + confidence / 2, n - 1) * curves.std(0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def normalize(scores: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """(score - low) / (high - low), broadcast over tasks (last axis): 0 = low ref, 1 = high ref."""
    low = np.asarray(low, float)
    high = np.asarray(high, float)
    if np.any(high == low):
        raise ValueError("normalisation references must differ (high == low for some task)")
    return (np.asarray(scores, float) - low) / (high - low)


def hold(values: Sequence[float], length: int, fill: float) -> np.ndarray:
    """A run's curve of `length` evaluations from its valid `values` (those before it diverged):
    the last valid value held to the end, `fill` where it has none. [valid] -> [length]."""
    values = [float(v) for v in values][:length]
    pad = values[-1] if values else float(fill)
    return np.array(values + [pad] * (length - len(values)), float)


def select(candidates: dict[str, np.ndarray]) -> str:
    """The candidate with the highest mean score over its seeds (the first on ties): the one
    selection rule, applied on tuning seeds only. Non-finite means count as -inf."""
    if not candidates:
        raise ValueError("no candidates to select from")
    means = {k: float(np.mean(v)) for k, v in candidates.items()}
    return max(means, key=lambda k: means[k] if np.isfinite(means[k]) else -np.inf)


class Interval(NamedTuple):
    """A point estimate with its interval (NaN bounds where n < 2), the sample size, the level."""

    estimate: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


def t_interval(x: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean of x [n] with the Student-t interval mean ± t_{n-1, (1+c)/2} s / sqrt(n) (s: ddof 1).
    Exact coverage for normal data at every n >= 2; NaN bounds at n = 1."""
    x = np.asarray(x, float).ravel()
    if x.size == 0:
        raise ValueError("t_interval of no values")
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, float("nan"), float("nan"), 1, confidence)
    half = _scipy.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return Interval(mean, float(mean - half), float(mean + half), int(x.size), confidence)


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Interval:
    """Mean of the paired differences a_i - b_i (the same seed, the same task) with its Student-t
    interval: A beats B at this level when the interval lies above 0. a, b: [n] -> Interval."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.size} vs {b.size}")
    return t_interval(a - b, confidence)


def probability_of_improvement(x: Sequence[np.ndarray], y: Sequence[np.ndarray]) -> float:
    """rliable's P(X > Y): the mean over tasks t of (1 / (N_t M_t)) sum_i sum_j S(x_ti, y_tj),
    S = 1 if x > y, 1/2 if equal, 0 otherwise (the Mann-Whitney U statistic, per task)."""
    if len(x) != len(y) or not len(x):
        raise ValueError("x and y need the same, non-zero number of tasks")
    per_task = []
    for xt, yt in zip(x, y, strict=True):
        xt, yt = np.asarray(xt, float).ravel(), np.asarray(yt, float).ravel()
        diff = xt[:, None] - yt[None, :]
        per_task.append(float(((diff > 0) + 0.5 * (diff == 0)).mean()))
    return float(np.mean(per_task))


def simultaneous(confidence: float, claims: int) -> float:
    """Bonferroni's level for each of `claims` intervals so that all hold together with
    probability >= confidence: 1 - (1 - confidence) / claims."""
    return 1 - (1 - confidence) / max(int(claims), 1)


def _normal(rng: np.random.Generator, size) -> np.ndarray:
    return rng.standard_normal(size)


def _lognormal(rng: np.random.Generator, size) -> np.ndarray:
    return rng.lognormal(0.0, 0.5, size)  # right-skewed, as returns of runs that sometimes fail


# reference distributions for coverage checks: (sampler, true mean, true IQM)
_Q = _scipy.norm.ppf([0.25, 0.75])
_IQM_NORMAL = 0.0
_IQM_LOGNORMAL = float(
    _scipy.lognorm(0.5).expect(lambda v: v, lb=_scipy.lognorm(0.5).ppf(0.25),
                               ub=_scipy.lognorm(0.5).ppf(0.75)) / 0.5
)  # fmt: skip
REFERENCES = {
    "normal": (_normal, 0.0, _IQM_NORMAL),
    "lognormal": (_lognormal, float(np.exp(0.125)), _IQM_LOGNORMAL),
}


def coverage(
    method: str,
    n: int,
    reference: str = "normal",
    *,
    trials: int = 2000,
    confidence: float = 0.95,
    reps: int = 500,
    seed: int = 0,
) -> float:
    """Fraction of `trials` simulated samples of size n from a reference distribution whose
    interval contains the true value: method "t" (Student-t of the mean) or "bootstrap_iqm"
    (percentile bootstrap of the IQM, `reps` resamples, as `stratified_bootstrap_ci`)."""
    sampler, mean, true_iqm = REFERENCES[reference]
    rng = np.random.default_rng(seed)
    samples = sampler(rng, (trials, n))
    if method == "t":
        half = _scipy.t.ppf(0.5 + confidence / 2, n - 1) * samples.std(1, ddof=1) / np.sqrt(n)
        return float((np.abs(samples.mean(1) - mean) <= half).mean())
    if method == "bootstrap_iqm":
        idx = rng.integers(0, n, size=(trials, reps, n))
        boot = np.sort(np.take_along_axis(samples[:, None, :], idx, axis=2), axis=2)
        cut = int(0.25 * n)
        stats = boot[:, :, cut : n - cut].mean(2)
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(stats, [tail, 100 - tail], axis=1)
        return float(((low <= true_iqm) & (true_iqm <= high)).mean())
    raise ValueError(f"unknown interval method {method!r}; use 't' or 'bootstrap_iqm'")


COVERAGE_TOLERANCE = 0.02  # an interval method is used where its simulated coverage is this close


@lru_cache(maxsize=64)
def coverage_at(n: int, confidence: float = 0.95) -> dict[str, float]:
    """The simulated coverage of the report's intervals at n seeds: Student-t on normal and on
    log-normal data, the percentile-bootstrap IQM on normal data (`coverage`)."""
    if n < 2:
        return {"t": float("nan"), "t_lognormal": float("nan"), "bootstrap_iqm": float("nan")}
    return {
        "t": coverage("t", n, confidence=confidence),
        "t_lognormal": coverage("t", n, "lognormal", confidence=confidence),
        "bootstrap_iqm": coverage("bootstrap_iqm", n, confidence=confidence),
    }


@lru_cache(maxsize=64)
def bootstrap_iqm_covers(n: int, confidence: float = 0.95) -> bool:
    """Whether the percentile-bootstrap IQM interval covers within COVERAGE_TOLERANCE of its
    nominal level at n seeds (normal reference, `coverage`); where it does not, reports print the
    IQM without an interval. Student-t intervals of means and paired differences are exact for
    normal data at any n >= 2 and carry every claim."""
    if n < 2:
        return False
    return coverage_at(n, confidence)["bootstrap_iqm"] >= confidence - COVERAGE_TOLERANCE


ALL_TASKS = "all tasks (normalised)"  # the task label of the cross-task claims


class Claim(NamedTuple):
    """One comparison of a report: `a` minus `b` on `task` (or ALL_TASKS), paired by seed; the
    difference's interval at the report's simultaneous level, rliable's P(a > b), and the verdict
    ("a > b", "a < b" or "not separated")."""

    task: str
    a: str
    b: str
    difference: Interval
    improvement: float
    verdict: str


class Comparison(NamedTuple):
    """What a report may claim (see `compare`)."""

    claims: list[Claim]
    level: float  # each interval's confidence (Bonferroni over all claims)
    winners: dict[str, str | None]  # task -> the separated best family, or None
    reasons: dict[str, str]  # task -> why there is no winner, or how it won
    normalised: dict[str, dict[str, dict[int, float]]]  # used task -> family -> seed -> score
    unused: dict[str, str]  # task -> why it has no normalised score


def normalize_to(scores: np.ndarray, floor: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The one normalisation: (x - mean(floor)) / (mean(reference) - mean(floor)); 0 = the
    floor (random policy), 1 = the tuned reference (Adam), over per-seed scores."""
    return normalize(scores, float(np.mean(floor)), float(np.mean(reference)))


def _paired(x: dict[int, float], y: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    common = sorted(set(x) & set(y))
    return np.array([x[s] for s in common], float), np.array([y[s] for s in common], float)


def _pairs(
    families: list[str], floor: str | None, reference: str | None, top: str, extra=()
) -> list:
    """The comparisons a task needs: every family against the floor and against the reference,
    the best family against every other, and the `extra` pairs whose families the task has
    (unordered pairs, each once)."""
    wanted: list[tuple[str, str]] = [(a, b) for a, b in extra if {a, b} <= set(families)]
    others = [f for f in families if f != floor]
    for f in others:
        if floor is not None:
            wanted.append((f, floor))
        if reference is not None and f != reference:
            wanted.append((f, reference))
        if f != top:
            wanted.append((top, f))
    seen, out = set(), []
    for a, b in wanted:
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            out.append((a, b))
    return out


def compare(
    scores: dict[str, dict[str, dict[int, float]]],
    floor: str | None = None,
    reference: str | None = None,
    confidence: float = 0.95,
    extra: Sequence[tuple[str, str]] = (),
) -> Comparison:
    """The claims of a study from the final scores of its evaluation seeds:
    scores[task][family][seed] (every seed counted, diverged ones held).

    Per task: every family against the floor (is it above a random policy?), against the
    reference, and the family with the best mean against every other; differences paired by seed,
    Student-t intervals, all at one Bonferroni level so that every claim of the report holds
    together with probability `confidence`. A task has a winner only when its best family is
    separated from every other family and, where there is a floor, from the floor. A task is
    normalised (floor = 0, reference = 1) only when the reference is separated above the floor;
    with two or more such tasks, every family is compared with the reference on the normalised
    scores of all of them, paired by (task, seed). `extra`: pairs (a, b) the study claims too
    (e.g. a learned optimizer against its random initialisation), compared on every task. Those cross-task comparisons are counted in the
    Bonferroni level whether or not enough tasks turn out normalised (conservative).
    """
    plan = []
    for task, fams in scores.items():
        names = [f for f in fams if f != floor]
        if not names:
            continue
        top = max(names, key=lambda f: np.mean(list(fams[f].values())))
        plan.append((task, top, _pairs(list(fams), floor, reference, top, extra)))
    reference_above = {}  # task -> whether the reference is separated above the floor
    tasks_normalisable = [
        t
        for t, fams in scores.items()
        if floor in fams and reference in fams and floor != reference
    ]
    agg_names = []
    if len(tasks_normalisable) >= 2:
        common = set.intersection(*(set(scores[t]) for t in tasks_normalisable))
        agg_names = [f for f in scores[tasks_normalisable[0]] if f in common and f != floor]
    agg_pairs = [(f, reference) for f in agg_names if f != reference]
    total = sum(len(p) for _, _, p in plan) + len(agg_pairs)
    level = simultaneous(confidence, total)

    def claim(task, a, b, xs: list[np.ndarray], ys: list[np.ndarray]) -> Claim:
        """a vs b over per-task paired score arrays (one task, or every normalised one)."""
        x, y = np.concatenate(xs), np.concatenate(ys)
        d = paired_difference(x, y, level)
        poi = probability_of_improvement(xs, ys) if x.size else float("nan")
        verdict = "not separated"
        if d.n >= 2 and d.low > 0:
            verdict = f"{a} > {b}"
        elif d.n >= 2 and d.high < 0:
            verdict = f"{a} < {b}"
        return Claim(task, a, b, d, poi, verdict)

    claims, winners, reasons = [], {}, {}
    for task, top, pairs in plan:
        fams = scores[task]
        task_claims = []
        for a, b in pairs:
            x, y = _paired(fams[a], fams[b])
            task_claims.append(claim(task, a, b, [x], [y]))
        claims += task_claims
        for c in task_claims:
            if floor is not None and {c.a, c.b} == {reference, floor}:
                reference_above[task] = c.verdict == f"{reference} > {floor}"
        beats = [c for c in task_claims if top in (c.a, c.b)]
        lost = [
            c.b if c.a == top else c.a
            for c in beats
            if c.verdict not in (f"{top} > {c.b}", f"{c.a} < {top}")
        ]
        if not beats:
            winners[task], reasons[task] = None, "one family: nothing to compare"
        elif lost:
            winners[task] = None
            reasons[task] = f"the best mean ({top}) is not separated from {', '.join(lost)}"
        else:
            winners[task] = top
            reasons[task] = f"{top} is separated above every other family" + (
                " and the floor" if floor is not None else ""
            )
    normalised, unused = {}, {}
    for task, fams in scores.items():
        if floor not in fams or reference not in fams:
            unused[task] = "no floor and reference family to normalise with"
        elif not reference_above.get(task, False):
            unused[task] = f"{reference} is not separated above {floor}"
        else:
            lo, hi = np.array(list(fams[floor].values())), np.array(list(fams[reference].values()))
            normalised[task] = {
                f: dict(zip(v, normalize_to(np.array(list(v.values())), lo, hi), strict=True))
                for f, v in fams.items()
            }
    usable = [t for t in tasks_normalisable if t in normalised]
    if len(usable) >= 2:
        for a, b in agg_pairs:
            pairs = [_paired(normalised[t][a], normalised[t][b]) for t in usable]
            claims.append(claim(ALL_TASKS, a, b, [p[0] for p in pairs], [p[1] for p in pairs]))
    return Comparison(claims, level, winners, reasons, normalised, unused)
