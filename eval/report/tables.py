"""Markdown and CSV tables of a study report (numbers from eval.report.scores)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from eval.report.load import FINISHED, Group
from eval.report.scores import TUNING, finals
from optim4rl.runtime import stats
from optim4rl.runtime.numbers import NONE, bracket, g3, pm, seed_list


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
    """One row per run: stage, final score, AUC, status and where a held run was held from."""
    rows = []
    for g in groups:
        final = finals(g, last)
        auc = stats.area_under_curve(g.steps, g.curves) if g.curves.shape[1] > 1 else None
        for i, seed in enumerate(g.seeds):
            held = g.held_from[i]
            rows.append(
                {
                    "task": g.task,
                    "stage": g.stage,
                    "optimizer": g.variant,
                    "seed": seed,
                    "final_score": float(final[i]),
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
            lines.append(
                f"- {g.task} / {g.variant} / seed {seed} ({g.stage}): {g.status[i]}; {what}"
            )
    return lines


SCORE_TEXT = {
    "score": "the mean of the run's last 20 logged update returns (the authors' A2C score; a "
    "logged return is the mean return of the episodes that finished in one update)",
    "return": "the mean of the run's last {last} evaluation return(s)",
}


def protocol(study: dict[str, Any], level: float, claims: int) -> list[str]:
    """The lines that say how every number below was made."""
    score = SCORE_TEXT.get(study.get("score_key", "return"), SCORE_TEXT["return"])
    seeds, tuning = study.get("seeds", []), study.get("tuning_seeds", [])
    lines = [
        f"Final score of a run = {score.format(last=study.get('last', 1))}. Evaluation seeds "
        f"{_seed_list(seeds)} are the only ones reported as results."
    ]
    if tuning:
        lines.append(
            f"Selection: every swept family ran each candidate on the tuning seeds "
            f"{_seed_list(tuning)}; the candidate with the best mean final score was run again "
            "on the evaluation seeds (tuning table at the end)."
        )
    cover = stats.coverage_at(len(seeds)) if len(seeds) > 1 else None
    at_n = (
        f" At {len(seeds)} evaluation seeds, simulated coverage of a nominal 95% interval: "
        f"Student-t {100 * cover['t']:.3g}% (normal data), {100 * cover['t_lognormal']:.3g}% "
        f"(log-normal), percentile-bootstrap IQM {100 * cover['bootstrap_iqm']:.3g}%"
        + (" (so printed)." if stats.bootstrap_iqm_covers(len(seeds)) else " (so not printed).")
        if cover
        else ""
    )
    lines.append(
        "Every seed counts: a diverged seed (non-finite parameters or loss) keeps its last finite "
        "evaluation to the end of training (listed at the end). Tables: mean ± standard error "
        "over seeds, 95% Student-t interval; IQM with a percentile-bootstrap interval only at seed "
        "counts where that interval covers (simulated coverage within 2 points of 95%, "
        "`optim4rl.runtime.stats.coverage`), else the IQM alone. 3 significant figures." + at_n
    )
    if claims:
        lines.append(
            f"Claims: differences paired by seed, Student-t intervals at {100 * level:.3g}% each "
            f"(Bonferroni over the report's {claims} comparisons, so that all hold together with "
            "95% probability); P(a > b) is rliable's probability of improvement. A task has a "
            "winner only when its best family is separated from every other"
            + (" and from the floor." if study.get("floor") else ".")
        )
    if study.get("floor"):
        floor = study["floor"]
        what = (
            "each evaluation seed's first evaluation, before any update"
            if floor == "untrained"
            else f"the `{floor}` family"
        )
        lines.append(
            f"Normalised score: 0 = the floor ({what}), 1 = the tuned reference "
            f"(`{study.get('reference')}`), mean over the evaluation seeds, per task; a task is "
            "normalised only where the reference is separated above the floor."
        )
    return lines


def _seed_list(seeds: list[int]) -> str:
    """The seeds and their count: "0..7 (8)", "3, 5 (2)"."""
    return f"{seed_list(seeds)} ({len(seeds)})"


def _iqm(r: dict[str, Any], prefix: str) -> str:
    iqm = g3(r[f"{prefix}_iqm"])
    ci = bracket(r[f"{prefix}_iqm_ci_low"], r[f"{prefix}_iqm_ci_high"])
    return f"{iqm} {ci}" if ci != NONE else iqm


def markdown(
    study: dict[str, Any],
    summary: list[dict[str, Any]],
    chosen_rows: list[dict[str, Any]],
    comparison: Any,
    claims: list[dict[str, Any]],
    agg: list[dict[str, Any]],
) -> str:
    """The report's Markdown: protocol, per-task results on the evaluation seeds, claims and
    winners, the normalised aggregate, and the tuning table."""
    lines = protocol(study, comparison.level, len(claims)) + [""]
    candidates = {}
    for r in chosen_rows:
        candidates[r["task"], r["family"]] = r["candidates"]
    evaluation = [r for r in summary if r["stage"] != TUNING]
    normalised = comparison.normalised
    for task in dict.fromkeys(r["task"] for r in evaluation):
        cells = [r for r in evaluation if r["task"] == task]
        success = any(np.isfinite(r.get("final_success_mean", np.nan)) for r in cells)
        norm = normalised.get(task, {})
        lines += [
            f"### {task} (evaluation seeds)",
            "",
            "| family | variant (of candidates) | seeds | env steps | final score | 95% CI | IQM "
            "| AUC | normalised [95% CI] |" + (" final success rate |" if success else ""),
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if success else ""),
        ]
        for r in cells:
            values = np.array(list(norm.get(r["family"], {}).values()))
            if values.size:
                ci = stats.t_interval(values)
                ncell = f"{g3(ci.estimate)} {bracket(ci.low, ci.high)}"
            else:
                ncell = NONE
            k = candidates.get((task, r["family"]), 1)
            lines.append(
                f"| {r['family']} | {r['optimizer']} ({k}) | {seeds_cell(r)} | "
                f"{g3(r['env_steps'])} | {pm(r['final_mean'], r['final_se'])} | "
                f"{bracket(r['final_ci_low'], r['final_ci_high'])} | {_iqm(r, 'final')} | "
                f"{pm(r['auc_mean'], r['auc_se'])} | {ncell} |"
                + (f" {pm(r['final_success_mean'], r['final_success_se'])} |" if success else "")
            )
        if task in comparison.winners:
            winner = comparison.winners[task]
            lines += ["", f"Winner: **{winner or 'none'}** ({comparison.reasons[task]})."]
        if task in comparison.unused and study.get("floor"):
            lines.append(f"Not normalised: {comparison.unused[task]}.")
        lines.append("")
    if claims:
        lines += [
            f"### Claims (paired differences, {100 * comparison.level:.3g}% intervals each)",
            "",
            "| task | a − b | candidates a/b | pairs | difference | interval | P(a > b) | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in claims:
            lines.append(
                f"| {c['task']} | {c['a']} − {c['b']} | {c['candidates_a']}/{c['candidates_b']} "
                f"| {c['pairs']} | {g3(c['difference'])} | {bracket(c['ci_low'], c['ci_high'])} | "
                f"{g3(c['p_improvement'])} | {c['verdict']} |"
            )
        floor = study.get("floor")
        uneven = sorted({(c["a"], c["candidates_a"]) for c in claims} |
                        {(c["b"], c["candidates_b"]) for c in claims if c["b"] != floor})  # fmt: skip
        if len({k for _, k in uneven}) > 1:
            counts = ", ".join(f"{f} {k}" for f, k in uneven)
            lines += [
                "",
                f"Candidates differ between families ({counts}): a family chosen from more "
                "candidates had more chances on the tuning seeds (the evaluation seeds are fresh).",
            ]
        lines.append("")
    if agg:
        lines += [
            "### All normalised tasks",
            "",
            "| family | tasks | seeds | normalised mean | 95% CI | IQM |",
            "|---|---|---|---|---|---|",
        ]
        for r in agg:
            lines.append(
                f"| {r['optimizer']} | {r['tasks']} | {r['seeds']} | {g3(r['norm_mean'])} | "
                f"{bracket(r['norm_ci_low'], r['norm_ci_high'])} | {_iqm(r, 'norm')} |"
            )
        lines.append("")
    if chosen_rows:
        lines += [
            "### Tuning seeds: every candidate (selection only, not results)",
            "",
            "| task | family | candidate | seeds | final score | chosen |",
            "|---|---|---|---|---|---|",
        ]
        for r in chosen_rows:
            lines.append(
                f"| {r['task']} | {r['family']} | {r['candidate']} | {seeds_cell(r)} | "
                f"{pm(r['mean'], r['se'])} | {'**yes**' if r['chosen'] else ''} |"
            )
        lines.append("")
    return "\n".join(lines)
