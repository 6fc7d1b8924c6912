"""`write_report(DIR)` and the `python -m eval report DIR` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eval.report import scores, tables
from eval.report.load import group_runs, load_runs
from optim4rl.runtime import stats
from optim4rl.runtime.cli import ArgumentParser


def write_report(out: str | Path) -> str:
    """Score the runs under `out`, write tables and plots, return the Markdown."""
    from eval import plots

    out = Path(out)
    runs, notes = load_runs(out)
    study = json.loads((out / "study.json").read_text()) if (out / "study.json").exists() else {}
    last = int(study.get("last", 1))
    groups, more = group_runs(runs, study.get("score_key", "return"))
    notes += more
    summary = scores.summarize(groups, last)
    chosen_rows = scores.selection(groups, last)
    floor, reference = study.get("floor"), study.get("reference")
    extra = [tuple(p) for p in study.get("claims", [])]
    comparison = stats.compare(
        scores.evaluation_scores(groups, last, floor), floor, reference, extra=extra
    )
    candidates = {(r["task"], r["family"]): r["candidates"] for r in chosen_rows}
    for (_, family), k in list(candidates.items()):
        candidates[stats.ALL_TASKS, family] = k
    claims = scores.claim_rows(comparison, candidates)
    agg = scores.aggregate(comparison)
    bars = scores.task_scores(comparison)
    folder = out / "report"
    folder.mkdir(exist_ok=True)
    tables.write_csv(folder / "runs.csv", tables.run_rows(groups, last))
    tables.write_csv(folder / "summary.csv", summary)
    tables.write_csv(folder / "tuning.csv", chosen_rows)
    tables.write_csv(folder / "claims.csv", claims)
    tables.write_csv(folder / "aggregate.csv", agg)
    tables.write_csv(folder / "task_scores.csv", bars)
    title = f"{study.get('name', out.name)} ({study.get('scale', '?')} scale)"
    evaluation = [g for g in groups if g.stage != scores.TUNING]
    figures = plots.overview(evaluation, bars, folder / "overview", title=title)
    figures += plots.learning_curves(evaluation, folder / "curves", title=title)
    figures += plots.sensitivity(
        [g for g in groups if g.stage == scores.TUNING], folder / "sensitivity", last=last,
        title=f"{title}, tuning seeds",
    )  # fmt: skip
    held = tables.held_runs(groups)
    text = "\n".join(
        [f"## {title}", "", tables.markdown(study, summary, chosen_rows, comparison, claims, agg)]
        + (
            ["### Diverged and stopped runs (held, in every number above)", "", *held, ""]
            if held
            else []
        )
        + [f"Note: {n}" for n in notes]
        + ([""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"])
    )
    (folder / "report.md").write_text(text + "\n")
    return text


def parser() -> ArgumentParser:
    """The options of `python -m eval report`."""
    p = ArgumentParser(
        prog="python -m eval report",
        description="Tables (Markdown, CSV) and plots (PNG, PDF) of a study's results, written "
        "into DIR/report/.",
    )
    p.add_argument("dir", metavar="DIR", help="the --out folder of `python -m eval run`")
    return p


def main(argv: list[str]) -> int:
    """`python -m eval report DIR`."""
    args = parser().parse_args(argv)
    try:
        print(write_report(args.dir))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"\nwritten: {Path(args.dir) / 'report'}")
    return 0
