"""`python -m eval report DIR`: tables and plots from a study's output folder (see eval.runner).

Writes DIR/report/: report.md (Markdown tables), runs.csv (one row per run, its status and where
a diverged run was held from), summary.csv (one row per task x optimizer), aggregate.csv
(normalised scores across tasks), normalisation.csv (each task's normalising references, their
gap ± standard error and whether the task is used), tuned.csv (per task, each swept family's best
variant), task_scores.csv (normalised score per task and optimizer), overview.{png,pdf} (learning
curves with 95% intervals beside a per-task bar chart of normalised scores), curves.{png,pdf} and
sensitivity.{png,pdf} (final return against a swept value).

Modules by job: load (run folders -> runs -> groups, diverged runs held), scores (statistics),
tables (Markdown, CSV), eval.plots (figures), cli (the command).
"""

from eval.report.cli import main, write_report
from eval.report.load import FINISHED, Group, Run, group_runs, load_runs
from eval.report.scores import (
    BOOTSTRAP_REPS,
    NOISE_SE,
    aggregate,
    normalisation_refs,
    summarize,
    tuned,
)

__all__ = [
    "BOOTSTRAP_REPS",
    "FINISHED",
    "NOISE_SE",
    "Group",
    "Run",
    "aggregate",
    "group_runs",
    "load_runs",
    "main",
    "normalisation_refs",
    "summarize",
    "tuned",
    "write_report",
]
