"""Markdown and CSV tables of a study report (numbers from eval.report.scores)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from eval import stats
from eval.report.load import FINISHED, Group
from eval.report.scores import BOOTSTRAP_REPS


def fmt(mean: float, se: float) -> str:
    return f"{mean:.1f} ± {se:.1f}" if np.isfinite(se) else f"{mean:.1f}"


def fmt_g(mean: float, se: float) -> str:
    return f"{mean:.3g} ± {se:.2g}" if np.isfinite(se) else f"{mean:.3g}"


def seeds_cell(r: dict[str, Any]) -> str:
    """ "n" or "n (d diverged, s stopped)" from a row with seeds, diverged and stopped counts."""
    extra = [f"{r[k]} {k}" for k in ("diverged", "stopped") if r.get(k)]
    return f"{r['seeds']}" + (f" ({', '.join(extra)})" if extra else "")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def run_rows(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """One row per run: final return, AUC, status and where a held run was held from."""
    rows = []
    for g in groups:
        final = stats.final_return(g.curves, min(last, g.curves.shape[1]))
        auc = stats.area_under_curve(g.steps, g.curves) if g.curves.shape[1] > 1 else None
        for i, seed in enumerate(g.seeds):
            held = g.held_from[i]
            rows.append(
                {
                    "task": g.task,
                    "optimizer": g.variant,
                    "seed": seed,
                    "final_return": float(final[i]),
                    "auc": float(auc[i]) if auc is not None else float("nan"),
                    "status": g.status[i],
                    "valid_evals": held,
                    "held_from_step": float(g.steps[held]) if held < len(g.steps) else "",
                }
            )
    return rows


def held_runs(groups: list[Group]) -> list[str]:
    """One line per diverged or stopped run: what it holds from where."""
    lines = []
    for g in groups:
        for i, seed in enumerate(g.seeds):
            if g.status[i] == FINISHED:
                continue
            n = g.held_from[i]
            what = (
                f"its evaluation at step {g.steps[n - 1]:.3g} ({g.curves[i, n - 1]:.3g}) held from "
                f"step {g.steps[n]:.3g}"
                if n
                else f"no finite evaluation: the task's untrained return {g.curves[i, 0]:.3g}"
            )
            lines.append(f"- {g.task} / {g.variant} / seed {seed}: {g.status[i]}; {what}")
    return lines


def markdown(
    summary: list[dict[str, Any]],
    agg: list[dict[str, Any]],
    agg_note: str,
    last: int,
    refs: list[dict[str, Any]] | None = None,
    best: list[dict[str, Any]] | None = None,
) -> str:
    lines = [
        f"Final return = mean of the last {last} evaluation(s); AUC = average return over training "
        "(trapezoid area / steps); mean ± standard error over seeds; IQM with a stratified "
        f"bootstrap 95% interval ({BOOTSTRAP_REPS} resamples, numpy, rliable's method). First "
        "eval = return at the first evaluation: the untrained agent where the algorithm evaluates "
        "before training (ppo, resel), the first training window for a2c; a final return that is "
        "not above it has learned nothing. Seeds = every seed that ran; a diverged seed (its "
        "parameters or loss became non-finite) counts in every number with its last finite "
        "evaluation held to the end of training (the task's untrained return if it had none); a "
        "stopped seed (a RESeL seed whose vmapped run stopped when another seed diverged) is held "
        "the same way. The held runs are listed at the end. Final success rate (tasks that report "
        "one, e.g. Key-to-Door, where it is the paper's metric) = the evaluation episodes' success "
        "rate, averaged like the final return.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in summary):
        cells = [r for r in summary if r["task"] == task]
        # tasks that report a success rate (Key-to-Door, the paper's metric there) get a column
        success = any(np.isfinite(r.get("final_success_mean", np.nan)) for r in cells)
        lines += [
            f"### {task}",
            "",
            "| optimizer | seeds | env steps | first eval | final return | IQM [95% CI] | AUC |"
            + (" final success rate |" if success else ""),
            "|---|---|---|---|---|---|---|" + ("---|" if success else ""),
        ]
        for r in cells:
            lines.append(
                f"| {r['optimizer']} | {seeds_cell(r)} | {r['env_steps']:.3g} | "
                f"{fmt(r['first_mean'], r['first_se'])} | {fmt(r['final_mean'], r['final_se'])} | "
                f"{r['final_iqm']:.1f} [{r['final_iqm_ci_low']:.1f}, {r['final_iqm_ci_high']:.1f}]"
                f" | {fmt(r['auc_mean'], r['auc_se'])} |"
                + (f" {fmt_g(r['final_success_mean'], r['final_success_se'])} |" if success else "")
            )
        lines.append("")
    if best:
        families = list(dict.fromkeys(r["family"] for r in best))
        lines += [
            "### Tuned: each family at its best swept value, per task",
            "",
            "Final return ± standard error (seeds) of the variant with the best mean final return "
            "(chosen on the same seeds, so optimistic for every family alike).",
            "",
            "| task | " + " | ".join(families) + " |",
            "|---|" + "---|" * len(families),
        ]
        for task in dict.fromkeys(r["task"] for r in best):
            cells = {r["family"]: r for r in best if r["task"] == task}
            lines.append(
                f"| {task} | "
                + " | ".join(
                    f"{fmt_g(c['final_mean'], c['final_se'])} ({c['variant']}; {seeds_cell(c)})"
                    if c
                    else ""
                    for c in (cells.get(f) for f in families)
                )
                + " |"
            )
        lines.append("")
    if agg_note:
        lines += ["### All tasks, normalised", "", agg_note, ""]
    if agg_note and refs:
        lines += [
            "| task | 0 = untrained | 1 = best final (optimizer) | gap ± SE | in aggregate |",
            "|---|---|---|---|---|",
        ]
        for r in refs:
            if r["used"]:
                flag = f"yes ({r['reason']})" if r["reason"] else "yes"
            else:
                flag = f"**no: {r['reason']}**"
            lines.append(
                f"| {r['task']} | {fmt_g(r['low'], r['low_se'])} | "
                f"{fmt_g(r['high'], r['high_se'])} ({r['high_optimizer']}) | "
                f"{fmt_g(r['gap'], r['gap_se'])} | {flag} |"
            )
        lines.append("")
    if agg:
        lines += [
            "| optimizer | tasks | seeds | IQM [95% CI] | mean [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for r in agg:
            lines.append(
                f"| {r['optimizer']} | {r['tasks']} | {seeds_cell(r)} | {r['iqm']:.2f} "
                f"[{r['iqm_ci_low']:.2f}, {r['iqm_ci_high']:.2f}] | {r['mean']:.2f} "
                f"[{r['mean_ci_low']:.2f}, {r['mean_ci_high']:.2f}] |"
            )
        lines.append("")
    return "\n".join(lines)
