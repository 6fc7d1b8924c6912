"""`python -m eval report DIR`: tables and plots from a study's output folder (see eval.runner).

Writes DIR/report/: report.md (Markdown tables), runs.csv (one row per run), summary.csv (one row
per task x optimizer), aggregate.csv (normalised scores across tasks), normalisation.csv (each
task's normalising references, their gap ± standard error and whether the task is used),
tuned.csv (per task, each swept family's best variant),
curves.{png,pdf} (learning curves, mean +- standard error) and sensitivity.{png,pdf} (final return
against a swept value).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval import stats

BOOTSTRAP_REPS = 2000


@dataclass
class Group:
    """All finished runs of one (task, variant): curves [seeds, evals] on common steps [evals]."""

    task: str
    variant: str
    family: str
    sweep: dict[str, Any]
    seeds: list[int]
    steps: np.ndarray
    curves: np.ndarray
    diverged: list[int]


def load_runs(out: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Finished runs under out/runs: dicts with config, rows and status; plus notes on the rest.
    Diverged runs (non-finite parameters or losses) are listed in the notes and left out of the
    statistics, which the tables say."""
    out = Path(out)
    if not (out / "runs").is_dir():
        raise FileNotFoundError(
            f"{out} holds no runs/ folder: is it the --out of `python -m eval run`?"
        )
    runs, notes = [], []
    for folder in sorted(p for p in (out / "runs").glob("*/*/*") if p.is_dir()):
        config_path = folder / "config.json"
        if not (folder / "done.json").exists():
            notes.append(f"unfinished run skipped: {folder.relative_to(out)}")
            continue
        rows = [
            json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line
        ]
        status = json.loads((folder / "done.json").read_text())["status"]
        if status != "finished":
            notes.append(f"{status} run left out of the statistics: {folder.relative_to(out)}")
        runs.append({"config": json.loads(config_path.read_text()), "rows": rows, "status": status})
    if not runs:
        raise FileNotFoundError(f"no finished runs under {out / 'runs'}")
    return runs, notes


def group_runs(runs: list[dict[str, Any]]) -> list[Group]:
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_cell[run["config"]["task"], run["config"]["variant"]].append(run)
    groups = []
    for (task, variant), all_runs in by_cell.items():
        all_runs.sort(key=lambda r: r["config"]["seed"])
        diverged = [r["config"]["seed"] for r in all_runs if r["status"] != "finished"]
        cell = [r for r in all_runs if r["status"] == "finished"]
        if not cell:  # every seed diverged: nothing to average, listed by write_report
            continue
        length = min(len(r["rows"]) for r in cell)
        steps = np.array([row["env_steps"] for row in cell[0]["rows"][:length]], float)
        curves = np.array([[row["return"] for row in r["rows"][:length]] for r in cell], float)
        config = cell[0]["config"]
        groups.append(
            Group(
                task=task,
                variant=variant,
                family=config["family"],
                sweep=config["sweep"],
                seeds=[r["config"]["seed"] for r in cell],
                steps=steps,
                curves=curves,
                diverged=diverged,
            )
        )
    return groups


def _fmt(mean: float, se: float) -> str:
    return f"{mean:.1f} ± {se:.1f}" if np.isfinite(se) else f"{mean:.1f}"


def _fmt_g(mean: float, se: float) -> str:
    return f"{mean:.3g} ± {se:.2g}" if np.isfinite(se) else f"{mean:.3g}"


def summarize(groups: list[Group], last: int) -> list[dict[str, Any]]:
    """One row per group: first evaluation, final (mean of the last `last` evals) and AUC
    statistics."""
    rows = []
    for g in groups:
        first_m, first_se = stats.mean_se(g.curves[:, 0])
        final = stats.final_return(g.curves, min(last, g.curves.shape[1]))
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
            finals = [stats.final_return(g.curves, min(last, g.curves.shape[1])) for g in cell]
            i = int(np.argmax([x.mean() for x in finals]))
            mean, se = stats.mean_se(finals[i])
            rows.append(
                {
                    "task": t,
                    "family": f,
                    "variant": cell[i].variant,
                    "swept": len(cell),
                    "seeds": len(cell[i].seeds),
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
        finals = [stats.final_return(g.curves, min(last, g.curves.shape[1])) for g in cell]
        best = int(np.argmax([f.mean() for f in finals]))
        high, se_high = stats.mean_se(finals[best])
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


def aggregate(
    groups: list[Group], last: int, refs: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Scores normalised per task, 0 = mean return at the first evaluation (untrained agents of all
    optimizers), 1 = best optimizer's mean final return; IQM and mean with stratified bootstrap
    95% intervals across tasks x seeds. Tasks whose normalising gap is within noise
    (`normalisation_refs`) are left out and named in the note. Empty when the study has a single
    task."""
    tasks = sorted({g.task for g in groups})
    variants = sorted({g.variant for g in groups})
    if len(tasks) < 2:
        return [], ""
    refs = refs if refs is not None else normalisation_refs(groups, last)
    by_task = {r["task"]: r for r in refs}
    usable = [t for t in tasks if by_task[t]["used"]]
    skipped = [t for t in tasks if t not in usable]
    rows = []
    for v in variants:
        cells = {g.task: g for g in groups if g.variant == v}
        if set(cells) != set(tasks):
            continue
        n = min(len(c.seeds) for c in cells.values())
        if not usable:
            continue
        scores = np.stack(
            [
                stats.normalize(
                    stats.final_return(cells[t].curves[:n], last),
                    by_task[t]["low"],
                    by_task[t]["high"],
                )
                for t in usable
            ],
            axis=1,
        )
        iqm, iqm_lo, iqm_hi = stats.stratified_bootstrap_ci(scores, "iqm", reps=BOOTSTRAP_REPS)
        mean, mean_lo, mean_hi = stats.stratified_bootstrap_ci(scores, "mean", reps=BOOTSTRAP_REPS)
        rows.append(
            {
                "optimizer": v,
                "tasks": len(usable),
                "seeds_per_task": n,
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
        f"when that gap exceeds {NOISE_SE:g} standard errors (table below)."
    )
    if skipped:
        why = "; ".join(
            f"{t}: gap {by_task[t]['gap']:.3g} ± {by_task[t]['gap_se']:.2g}" for t in skipped
        )
        note += (
            f" Left out: {', '.join(skipped)} (normalising gap not clearly above noise, so the "
            f"scores would be huge or sign-flipped; {why})."
        )
    if not usable:
        note += " No task is left, so there is no aggregate."
    return rows, note


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


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
        "not above it has learned nothing.",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in summary):
        lines += [
            f"### {task}",
            "",
            "| optimizer | seeds | env steps | first eval | final return | IQM [95% CI] | AUC |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in summary if r["task"] == task):
            div = f" ({r['diverged']} diverged)" if r["diverged"] else ""
            lines.append(
                f"| {r['optimizer']} | {r['seeds']}{div} | {r['env_steps']:.3g} | "
                f"{_fmt(r['first_mean'], r['first_se'])} | {_fmt(r['final_mean'], r['final_se'])} | {r['final_iqm']:.1f} "
                f"[{r['final_iqm_ci_low']:.1f}, {r['final_iqm_ci_high']:.1f}] | "
                f"{_fmt(r['auc_mean'], r['auc_se'])} |"
            )
        lines.append("")
    if best:
        families = list(dict.fromkeys(r["family"] for r in best))
        lines += [
            "### Tuned: each family at its best swept value, per task",
            "",
            "Final return ± standard error of the variant with the best mean final return (chosen "
            "on the same seeds, so optimistic for every family alike).",
            "",
            "| task | " + " | ".join(families) + " |",
            "|---|" + "---|" * len(families),
        ]
        for task in dict.fromkeys(r["task"] for r in best):
            cells = {r["family"]: r for r in best if r["task"] == task}
            lines.append(
                f"| {task} | "
                + " | ".join(
                    f"{_fmt_g(c['final_mean'], c['final_se'])} ({c['variant']})" if c else ""
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
                f"| {r['task']} | {_fmt_g(r['low'], r['low_se'])} | "
                f"{_fmt_g(r['high'], r['high_se'])} ({r['high_optimizer']}) | "
                f"{_fmt_g(r['gap'], r['gap_se'])} | {flag} |"
            )
        lines.append("")
    if agg:
        lines += [
            "| optimizer | tasks | seeds/task | IQM [95% CI] | mean [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for r in agg:
            lines.append(
                f"| {r['optimizer']} | {r['tasks']} | {r['seeds_per_task']} | {r['iqm']:.2f} "
                f"[{r['iqm_ci_low']:.2f}, {r['iqm_ci_high']:.2f}] | {r['mean']:.2f} "
                f"[{r['mean_ci_low']:.2f}, {r['mean_ci_high']:.2f}] |"
            )
        lines.append("")
    return "\n".join(lines)


def write_report(out: str | Path) -> str:
    """Aggregate the finished runs under `out`, write tables and plots, return the Markdown."""
    from eval import plots

    out = Path(out)
    runs, notes = load_runs(out)
    study = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    last = int(study.get("last", 1))
    groups = group_runs(runs)
    summary = summarize(groups, last)
    refs = normalisation_refs(groups, last)
    agg, agg_note = aggregate(groups, last, refs)
    best = tuned(groups, last)
    folder = out / "report"
    folder.mkdir(exist_ok=True)
    _write_csv(
        folder / "runs.csv",
        [
            {
                "task": g.task,
                "optimizer": g.variant,
                "seed": s,
                "final_return": float(
                    stats.final_return(g.curves[i : i + 1], min(last, g.curves.shape[1]))[0]
                ),
                "auc": float(stats.area_under_curve(g.steps, g.curves[i : i + 1])[0])
                if g.curves.shape[1] > 1
                else float("nan"),
                "status": "diverged" if s in g.diverged else "finished",
            }
            for g in groups
            for i, s in enumerate(g.seeds)
        ],
    )
    _write_csv(folder / "summary.csv", summary)
    _write_csv(folder / "aggregate.csv", agg)
    _write_csv(folder / "tuned.csv", best)
    if agg_note:
        _write_csv(folder / "normalisation.csv", refs)
    title = f"{study.get('name', out.name)} ({study.get('scale', '?')} scale)"
    figures = plots.learning_curves(groups, folder / "curves", title=title)
    figures += plots.sensitivity(groups, folder / "sensitivity", last=last, title=title)
    text = "\n".join(
        [f"## {title}", "", markdown(summary, agg, agg_note, last, refs, best)]
        + [f"Note: {n}" for n in notes]
        + ([""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"])
    )
    (folder / "report.md").write_text(text + "\n")
    return text


def main(argv: list[str]) -> int:
    """`python -m eval report DIR`."""
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m eval report DIR   (DIR: the --out folder of `python -m eval run`)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        print(write_report(argv[0]))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nwritten: {Path(argv[0]) / 'report'}")
    return 0
