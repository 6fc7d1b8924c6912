"""Statistics of a study's groups: per-cell summaries, the tuned table, the normalising
references of each task and the normalised cross-task aggregate. Every seed of a group enters
(diverged runs held, see eval.report.load)."""

from __future__ import annotations

from typing import Any

import numpy as np

from eval import stats
from eval.report.load import Group

BOOTSTRAP_REPS = 2000


def finals(g: Group, last: int) -> np.ndarray:
    """Final return of every seed of `g`: mean of its last `last` evaluations, [seeds]."""
    return stats.final_return(g.curves, min(last, g.curves.shape[1]))


def summarize(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """One row per group: first evaluation, final (mean of the last `last` evals) and AUC
    statistics; where any group reports a success rate (Key-to-Door), every row gets the final
    success rate's mean and standard error over seeds (NaN for groups without one)."""
    with_success = any(g.success is not None for g in groups)
    rows = []
    for g in groups:
        first_m, first_se = stats.mean_se(g.curves[:, 0])
        final = finals(g, last)
        auc = stats.area_under_curve(g.steps, g.curves) if g.curves.shape[1] > 1 else final
        fm, fse = stats.mean_se(final)
        am, ase = stats.mean_se(auc)
        point, low, high = stats.stratified_bootstrap_ci(final, "iqm", reps=BOOTSTRAP_REPS)
        rows.append(
            {
                "task": g.task,
                "optimizer": g.variant,
                "seeds": len(g.seeds),
                "diverged": len(g.diverged),
                "stopped": len(g.stopped),
                "env_steps": float(g.steps[-1]),
                "first_mean": first_m,
                "first_se": first_se,
                "final_mean": fm,
                "final_se": fse,
                "final_iqm": point,
                "final_iqm_ci_low": low,
                "final_iqm_ci_high": high,
                "auc_mean": am,
                "auc_se": ase,
            }
        )
        if with_success:
            sm, sse = (
                stats.mean_se(stats.final_return(g.success, min(last, g.success.shape[1])))
                if g.success is not None
                else (float("nan"), float("nan"))
            )
            rows[-1] |= {"final_success_mean": sm, "final_success_se": sse}
    return rows


def tuned(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """Per task and family, the swept variant with the best mean final return. Empty when no
    family was swept. Chosen on the seeds it is scored on, so optimistic for every family alike."""
    if all(
        len({g.variant for g in groups if g.family == f}) < 2 for f in {g.family for g in groups}
    ):
        return []
    rows = []
    for t in dict.fromkeys(g.task for g in groups):
        for f in dict.fromkeys(g.family for g in groups if g.task == t):
            cell = [g for g in groups if g.task == t and g.family == f]
            scores = [finals(g, last) for g in cell]
            i = int(np.argmax([x.mean() for x in scores]))
            mean, se = stats.mean_se(scores[i])
            rows.append(
                {
                    "task": t,
                    "family": f,
                    "variant": cell[i].variant,
                    "swept": len(cell),
                    "seeds": len(cell[i].seeds),
                    "diverged": len(cell[i].diverged),
                    "stopped": len(cell[i].stopped),
                    "final_mean": mean,
                    "final_se": se,
                }
            )
    return rows


NOISE_SE = 2.0  # a normalising gap must exceed this many standard errors to be used


def normalisation_refs(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """Per task, the references of the normalised score and whether the gap between them is
    clearly larger than noise.

    low = mean over optimizers of their mean return at the first evaluation (untrained agents),
    se_low^2 = sum_g var_g / n_g / G^2 (var over seeds, ddof 1); high = the best optimizer's mean
    final return, se_high = its standard error over seeds. The gap high - low has standard error
    sqrt(se_low^2 + se_high^2) (treated as independent; the best optimizer's own first evaluations
    are part of low, a positive correlation, so this errs towards excluding). A task is used only
    if gap > NOISE_SE * se_gap; a gap within noise would give huge or sign-flipped scores. Where an
    optimizer has a single seed the error is unknown and only gap > 0 is required (said in
    `reason`, which is empty for a task used normally).
    """
    refs = []
    for t in sorted({g.task for g in groups}):
        cell = [g for g in groups if g.task == t]
        first = [g.curves[:, 0] for g in cell]
        low = float(np.mean([f.mean() for f in first]))
        var_low = [f.var(ddof=1) / f.size if f.size > 1 else np.nan for f in first]
        se_low = float(np.sqrt(np.sum(var_low)) / len(first))
        scores = [finals(g, last) for g in cell]
        best = int(np.argmax([f.mean() for f in scores]))
        high, se_high = stats.mean_se(scores[best])
        gap = high - low
        se_gap = float(np.hypot(se_low, se_high))
        if not np.isfinite(se_gap):
            used = gap > 0
            reason = "1 seed: noise not assessable" if used else "gap <= 0"
        else:
            used = gap > NOISE_SE * se_gap
            reason = "" if used else f"gap within noise (< {NOISE_SE:g} SE)"
        refs.append(
            {
                "task": t,
                "low": low,
                "low_se": se_low,
                "high": high,
                "high_se": se_high,
                "high_optimizer": cell[best].variant,
                "gap": gap,
                "gap_se": se_gap,
                "used": bool(used),
                "reason": reason,
            }
        )
    return refs


def normalised(g: Group, ref: dict[str, Any], last: int) -> np.ndarray:
    """Normalised final return of every seed of `g`: (final - low) / (high - low), [seeds]."""
    return stats.normalize(finals(g, last), ref["low"], ref["high"])


def aggregate(
    groups: list[Group], last: int, refs: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Scores normalised per task (`normalised`), 0 = mean return at the first evaluation
    (untrained agents of all optimizers), 1 = best optimizer's mean final return; IQM and mean
    with stratified bootstrap 95% intervals over every seed of every used task (tasks may hold
    different numbers of seeds). Tasks whose normalising gap is within noise
    (`normalisation_refs`) and optimizers that lack a task are left out and named in the note.
    Empty when the study has a single task."""
    tasks = sorted({g.task for g in groups})
    variants = list(dict.fromkeys(g.variant for g in groups))
    if len(tasks) < 2:
        return [], ""
    refs = refs if refs is not None else normalisation_refs(groups, last)
    by_task = {r["task"]: r for r in refs}
    usable = [t for t in tasks if by_task[t]["used"]]
    skipped = [t for t in tasks if t not in usable]
    rows, missing = [], []
    for v in variants:
        cells = {g.task: g for g in groups if g.variant == v}
        if not set(usable) <= set(cells):
            missing.append(f"{v} (no runs on {', '.join(sorted(set(usable) - set(cells)))})")
            continue
        if not usable:
            continue
        scores = [normalised(cells[t], by_task[t], last) for t in usable]
        iqm, iqm_lo, iqm_hi = stats.stratified_bootstrap_ci(scores, "iqm", reps=BOOTSTRAP_REPS)
        mean, mean_lo, mean_hi = stats.stratified_bootstrap_ci(scores, "mean", reps=BOOTSTRAP_REPS)
        counts = [len(cells[t].seeds) for t in usable]
        rows.append(
            {
                "optimizer": v,
                "tasks": len(usable),
                "seeds": sum(counts),
                "seeds_per_task_min": min(counts),
                "seeds_per_task_max": max(counts),
                "diverged": sum(len(cells[t].diverged) for t in usable),
                "stopped": sum(len(cells[t].stopped) for t in usable),
                "iqm": iqm,
                "iqm_ci_low": iqm_lo,
                "iqm_ci_high": iqm_hi,
                "mean": mean,
                "mean_ci_low": mean_lo,
                "mean_ci_high": mean_hi,
            }
        )
    note = (
        "Normalised score per task: 0 = mean return of all optimizers at the first evaluation "
        "(untrained), 1 = best optimizer's mean final return on that task. A task is used only "
        f"when that gap exceeds {NOISE_SE:g} standard errors (table below). Every seed of every "
        "used task enters, diverged ones held (seeds column: all seeds, of which diverged)."
    )
    if skipped:
        why = "; ".join(
            f"{t}: gap {by_task[t]['gap']:.3g} ± {by_task[t]['gap_se']:.2g}" for t in skipped
        )
        note += (
            f" Left out: {', '.join(skipped)} (normalising gap not clearly above noise, so the "
            f"scores would be huge or sign-flipped; {why})."
        )
    ragged = [r["optimizer"] for r in rows if r["seeds_per_task_min"] != r["seeds_per_task_max"]]
    if ragged:
        note += (
            f" Tasks hold different numbers of seeds for {', '.join(ragged)} (unfinished runs, "
            "listed below): the bootstrap resamples each task's own seeds, and a task weighs in "
            "proportion to its seeds."
        )
    if missing:
        note += f" Optimizers left out of the aggregate: {'; '.join(missing)}."
    if not usable:
        note += " No task is left, so there is no aggregate."
    return rows, note


def task_scores(
    groups: list[Group], last: int, refs: list[dict[str, Any]], best: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per task and optimizer, the mean normalised final return with a 95% bootstrap interval
    over seeds (for the bar chart). Where families were swept, each family at its tuned variant
    (`tuned`); tasks with high == low have no normalised score and are left out."""
    by_task = {r["task"]: r for r in refs}
    picked = {(r["task"], r["variant"]) for r in best}
    rows = []
    for g in groups:
        ref = by_task[g.task]
        if (best and (g.task, g.variant) not in picked) or ref["high"] == ref["low"]:
            continue
        mean, low, high = stats.stratified_bootstrap_ci(
            normalised(g, ref, last), "mean", reps=BOOTSTRAP_REPS
        )
        rows.append(
            {
                "task": g.task,
                "optimizer": g.family if best else g.variant,
                "variant": g.variant,
                "seeds": len(g.seeds),
                "diverged": len(g.diverged) + len(g.stopped),
                "used": ref["used"],
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return rows
