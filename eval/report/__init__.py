"""`python -m eval report DIR`: tables and plots from a study's output folder (see eval.runner).

Writes DIR/report/: report.md (Markdown tables), runs.csv (one row per run: stage, final score,
status and where a diverged run was held from), summary.csv (one row per task x variant x stage),
tuning.csv (every candidate on the tuning seeds and the chosen one), claims.csv (paired
differences, intervals, probability of improvement, verdicts), aggregate.csv (normalised scores
pooled over tasks), task_scores.csv (normalised score per task and family), overview.{png,pdf}
(learning curves with 95% intervals beside a per-task bar chart of normalised scores),
curves.{png,pdf}, and sensitivity.{png,pdf} (final score against a swept value, tuning seeds).

Modules by job: load (run folders -> runs -> groups, diverged runs held), scores (statistics,
through optim4rl.runtime.stats), tables (Markdown, CSV), eval.plots (figures), cli (the command).
"""

from eval.report.cli import main, write_report
from eval.report.load import FINISHED, Group, Run, group_runs, load_runs
from eval.report.scores import BOOTSTRAP_REPS, aggregate, chosen, selection, summarize

__all__ = [
    "BOOTSTRAP_REPS",
    "FINISHED",
    "Group",
    "Run",
    "aggregate",
    "chosen",
    "group_runs",
    "load_runs",
    "main",
    "selection",
    "summarize",
    "write_report",
]
