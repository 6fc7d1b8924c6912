"""Statistics of a study's groups, all through `optim4rl.runtime.stats` (the functions that
`python -m meta_train evaluate` uses too): each run's final score, the selection on the tuning
seeds, and on the evaluation seeds the per-family summaries, the claims (paired differences at one
simultaneous level, probability of improvement, winners) and the normalised scores (floor = 0,
tuned reference = 1). Every seed of a group enters (diverged runs held, see eval.report.load)."""

from __future__ import annotations

from typing import Any

import numpy as np

from eval.report.load import Group
from optim4rl.runtime import stats

BOOTSTRAP_REPS = 2000
UNTRAINED = "untrained"  # the floor made of the evaluation seeds' first evaluations
TUNING = "tuning"


def finals(g: Group, last: int) -> np.ndarray:
    """The final score of every seed of `g`: the mean of the last `last` evaluations of its score
    curve (the algorithm's authors' score, `eval.algorithms`), [seeds]."""
    return stats.final_return(g.score_curves, min(last, g.score_curves.shape[1]))


def _interval_row(x: np.ndarray, prefix: str) -> dict[str, float]:
    """mean, s.e., 95% t interval and IQM (with its bootstrap interval where that covers at this
    n, `stats.bootstrap_iqm_covers`; NaN bounds otherwise) of per-seed values x."""
    mean, se = stats.mean_se(x)
    ci = stats.t_interval(x)
    out = {
        f"{prefix}_mean": mean,
        f"{prefix}_se": se,
        f"{prefix}_ci_low": ci.low,
        f"{prefix}_ci_high": ci.high,
        f"{prefix}_iqm": stats.iqm(x),
        f"{prefix}_iqm_ci_low": float("nan"),
        f"{prefix}_iqm_ci_high": float("nan"),
    }
    if stats.bootstrap_iqm_covers(x.size):
        _, low, high = stats.stratified_bootstrap_ci(x, "iqm", reps=BOOTSTRAP_REPS)
        out |= {f"{prefix}_iqm_ci_low": low, f"{prefix}_iqm_ci_high": high}
    return out


def summarize(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """One row per group (both stages): seeds, final score statistics (`_interval_row`), AUC of
    the return curve; where any group reports a success rate (Key-to-Door), its final mean and s.e.
    """
    with_success = any(g.success is not None for g in groups)
    rows = []
    for g in groups:
        final = finals(g, last)
        auc = stats.area_under_curve(g.steps, g.curves) if g.curves.shape[1] > 1 else final
        am, ase = stats.mean_se(auc)
        rows.append(
            {
                "task": g.task,
                "stage": g.stage,
                "family": g.family,
                "optimizer": g.variant,
                "seeds": len(g.seeds),
                "diverged": len(g.diverged),
                "stopped": len(g.stopped),
                "env_steps": float(g.steps[-1]),
                **_interval_row(final, "final"),
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


def selection(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """The tuning stage: per task and swept family, every candidate's mean final score ± s.e. on
    the tuning seeds and which one `stats.select` chose (the best mean)."""
    rows = []
    tuning = [g for g in groups if g.stage == TUNING]
    for t in dict.fromkeys(g.task for g in tuning):
        for f in dict.fromkeys(g.family for g in tuning if g.task == t):
            cell = [g for g in tuning if g.task == t and g.family == f]
            scores = {g.variant: finals(g, last) for g in cell}
            chosen = stats.select(scores)
            for g in cell:
                mean, se = stats.mean_se(scores[g.variant])
                rows.append(
                    {
                        "task": t,
                        "family": f,
                        "candidate": g.variant,
                        "candidates": len(cell),
                        "seeds": len(g.seeds),
                        "diverged": len(g.diverged),
                        "stopped": len(g.stopped),
                        "mean": mean,
                        "se": se,
                        "chosen": g.variant == chosen,
                    }
                )
    return rows


def chosen(groups: list[Group], last: int) -> dict[tuple[str, str], str]:
    """(task, family) -> the variant chosen on the tuning seeds."""
    return {
        (r["task"], r["family"]): r["candidate"] for r in selection(groups, last) if r["chosen"]
    }


def evaluation_scores(
    groups: list[Group], last: int, floor: str | None = None
) -> dict[str, dict[str, dict[int, float]]]:
    """scores[task][family][seed]: the final scores on the evaluation seeds. With floor
    "untrained", a pseudo-family of that name holds each seed's first evaluation (the untrained
    agent; the mean over the families' runs of that seed, which share its initialisation)."""
    out: dict[str, dict[str, dict[int, float]]] = {}
    evaluation = [g for g in groups if g.stage != TUNING]
    for g in evaluation:
        out.setdefault(g.task, {})[g.family] = dict(
            zip(g.seeds, finals(g, last).tolist(), strict=True)
        )
    if floor == UNTRAINED:
        for task, fams in out.items():
            firsts: dict[int, list[float]] = {}
            for g in (g for g in evaluation if g.task == task):
                for seed, value in zip(g.seeds, g.curves[:, 0], strict=True):
                    firsts.setdefault(seed, []).append(float(value))
            fams[UNTRAINED] = {s: float(np.mean(v)) for s, v in firsts.items()}
    return out


def task_scores(comparison: stats.Comparison) -> list[dict[str, Any]]:
    """Per normalised task and family, the mean normalised score with its 95% t interval over
    seeds (for the bar chart)."""
    rows = []
    for task, fams in comparison.normalised.items():
        for family, per_seed in fams.items():
            ci = stats.t_interval(np.array(list(per_seed.values())))
            rows.append(
                {
                    "task": task,
                    "optimizer": family,
                    "seeds": ci.n,
                    "mean": ci.estimate,
                    "ci_low": ci.low,
                    "ci_high": ci.high,
                }
            )
    return rows


def aggregate(comparison: stats.Comparison) -> list[dict[str, Any]]:
    """Per family, its normalised scores pooled over every normalised task (each seed of each
    task once): mean with the 95% t interval, IQM (bootstrap interval where it covers at that n).
    Empty with fewer than two normalised tasks, or for a family missing from one of them."""
    tasks = list(comparison.normalised)
    if len(tasks) < 2:
        return []
    names = [f for f in comparison.normalised[tasks[0]] if all(f in comparison.normalised[t]
                                                               for t in tasks)]  # fmt: skip
    rows = []
    for f in names:
        x = np.concatenate([list(comparison.normalised[t][f].values()) for t in tasks])
        rows.append(
            {"optimizer": f, "tasks": len(tasks), "seeds": x.size} | _interval_row(x, "norm")
        )
    return rows


def claim_rows(comparison: stats.Comparison, candidates: dict[tuple[str, str], int]) -> list:
    """The claims as table rows; `candidates[(task, family)]` = how many variants the family's
    choice was made from (1 = unswept)."""
    rows = []
    for c in comparison.claims:
        d = c.difference
        rows.append(
            {
                "task": c.task,
                "a": c.a,
                "b": c.b,
                "candidates_a": candidates.get((c.task, c.a), 1),
                "candidates_b": candidates.get((c.task, c.b), 1),
                "pairs": d.n,
                "difference": d.estimate,
                "ci_low": d.low,
                "ci_high": d.high,
                "level": comparison.level,
                "p_improvement": c.improvement,
                "verdict": c.verdict,
            }
        )
    return rows
