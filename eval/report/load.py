"""Loading a study's output folder (see eval.runner) into runs, and runs into groups of seeds
(one group per task, variant and stage: the tuning seeds and the evaluation seeds apart).

A run is valid up to its first evaluation whose return is non-finite or whose row says the
parameters or losses were no longer finite ("finite": 0). A diverged run keeps every seed in the
statistics: its last valid evaluation is held to the end of training; a run with no valid
evaluation at all is given the task's untrained return (the mean first evaluation of every run on
the task that has one). RESeL runs that stopped because another seed of their vmapped program
diverged ("stopped") are held the same way.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optim4rl.runtime.stats import hold

FINISHED, DIVERGED, STOPPED = "finished", "diverged", "stopped"


@dataclass
class Run:
    """One seed of one (task, variant) as `eval run` left it."""

    task: str
    variant: str
    family: str
    sweep: dict[str, Any]
    seed: int
    status: str  # FINISHED, DIVERGED or STOPPED
    rows: list[dict[str, Any]]
    folder: str  # relative to the study folder
    stage: str = "evaluation"  # or "tuning" (eval.cells.TUNING)

    @property
    def valid(self) -> int:
        """Number of evaluations before the first non-finite one."""
        for i, row in enumerate(self.rows):
            ok = float(row.get("finite", 1.0)) and np.isfinite(row.get("return", np.nan))
            if not ok or not np.isfinite(row.get("env_steps", np.nan)):
                return i
        return len(self.rows)


@dataclass
class Group:
    """Every run of one (task, variant): curves [seeds, evals] on the task's steps [evals], with
    diverged and stopped runs held from `held_from[i]` (= evals for a run that finished)."""

    task: str
    variant: str
    family: str
    sweep: dict[str, Any]
    seeds: list[int]
    steps: np.ndarray
    curves: np.ndarray
    status: list[str] = field(default_factory=list)
    held_from: list[int] = field(default_factory=list)
    # success rate curves [seeds, evals], held like `curves`, where the runs report "success"
    # (RESeL on Key-to-Door); None where they do not
    success: np.ndarray | None = None
    stage: str = "evaluation"
    # curves of the algorithm's score field (A2C: "score"), held like `curves`; None = `curves`
    score_curves: np.ndarray | None = None

    def __post_init__(self):
        self.status = self.status or [FINISHED] * len(self.seeds)
        self.held_from = self.held_from or [len(self.steps)] * len(self.seeds)
        if self.score_curves is None:
            self.score_curves = self.curves

    @property
    def diverged(self) -> list[int]:
        return [s for s, st in zip(self.seeds, self.status, strict=True) if st == DIVERGED]

    @property
    def stopped(self) -> list[int]:
        return [s for s, st in zip(self.seeds, self.status, strict=True) if st == STOPPED]


def _study_runs(out: Path) -> set[tuple[str, str, int]] | None:
    """(task, variant, seed) of every run the study as last run defines (its study.json: the
    runs it planned, tuning and evaluation stages), or None where study.json does not list them."""
    path = out / "study.json"
    study = json.loads(path.read_text()) if path.exists() else {}
    if "planned" in study:
        return {(t, v, s) for t, v, s in study["planned"]}
    if not all(k in study for k in ("tasks", "variants", "seeds")):
        return None
    names = [v["name"] for v in study["variants"]]
    return {(t, v, s) for t in study["tasks"] for v in names for s in study["seeds"]}


def load_runs(out: str | Path) -> tuple[list[Run], list[str]]:
    """Every run under out/runs with a done.json that the study (study.json) still defines; plus a
    note for each run left out and why."""
    out = Path(out)
    if not (out / "runs").is_dir():
        raise FileNotFoundError(
            f"{out} holds no runs/ folder: is it the --out of `python -m eval run`?"
        )
    defined = _study_runs(out)
    runs, notes = [], []
    for folder in sorted(p for p in (out / "runs").glob("*/*/*") if p.is_dir()):
        where = str(folder.relative_to(out))
        if not (folder / "done.json").exists():
            notes.append(f"excluded: {where} is unfinished (no done.json; rerun the study)")
            continue
        config = json.loads((folder / "config.json").read_text())
        if (
            defined is not None
            and (config["task"], config["variant"], config["seed"]) not in defined
        ):
            notes.append(
                f"excluded: {where} is not in the study as last run (study.json; an older "
                "version's variant, task or seed)"
            )
            continue
        rows = [
            json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line
        ]
        status = json.loads((folder / "done.json").read_text())["status"]
        if status != FINISHED:
            error = str(rows[-1].get("error", "")) if rows else ""
            status = STOPPED if error.startswith("stopped with seed") else DIVERGED
        runs.append(
            Run(
                config["task"],
                config["variant"],
                config["family"],
                config["sweep"],
                config["seed"],
                status,
                rows,
                where,
                config.get("stage", "evaluation"),
            )
        )
    if not runs:
        raise FileNotFoundError(f"no finished runs under {out / 'runs'}")
    return runs, notes


def _task_steps(runs: list[Run]) -> np.ndarray:
    """The evaluation steps of a task: those every finished run reached; with no finished run,
    the longest valid prefix of any run."""
    finished = [r for r in runs if r.status == FINISHED and r.valid == len(r.rows)]
    if finished:
        length = min(len(r.rows) for r in finished)
        source = finished[0]
    else:
        source = max(runs, key=lambda r: r.valid)
        length = source.valid
    return np.array([row["env_steps"] for row in source.rows[:length]], float)


def group_runs(runs: list[Run], score_key: str = "return") -> tuple[list[Group], list[str]]:
    """Groups by (task, variant, stage), every seed in (diverged ones held, see the module
    docstring), with the curves of `score_key` held alike; plus a note for each run that cannot be
    placed (a task where no run has a valid evaluation)."""
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    groups, notes = [], []
    for task, task_runs in by_task.items():
        steps = _task_steps(task_runs)
        firsts = [r.rows[0]["return"] for r in task_runs if r.valid > 0]
        untrained = float(np.mean(firsts)) if firsts else float("nan")
        first_scores = [r.rows[0].get(score_key, np.nan) for r in task_runs if r.valid > 0]
        untrained_score = float(np.mean(first_scores)) if first_scores else float("nan")
        first_success = [r.rows[0].get("success", np.nan) for r in task_runs if r.valid > 0]
        untrained_success = float(np.mean(first_success)) if first_success else float("nan")
        cells: dict[tuple[str, str], list[Run]] = defaultdict(list)
        for run in task_runs:
            cells[run.variant, run.stage].append(run)
        for (variant, stage), cell in cells.items():
            cell.sort(key=lambda r: r.seed)
            kept, curves, status, held, success, scores = [], [], [], [], [], []
            for r in cell:
                n = min(r.valid, len(steps))
                if (n == 0 and not firsts) or len(steps) == 0:
                    notes.append(f"excluded: {r.folder} has no finite evaluation to hold")
                    continue
                curves.append(hold([row["return"] for row in r.rows[:n]], len(steps), untrained))
                values = [row.get(score_key, np.nan) for row in r.rows[:n]]
                scores.append(hold(values, len(steps), untrained_score))
                rates = [row.get("success", np.nan) for row in r.rows[:n]]
                success.append(
                    rates + [rates[-1] if rates else untrained_success] * (len(steps) - n)
                )
                kept.append(r.seed)
                if r.status == FINISHED and n < len(steps):  # a non-finite return in a finished run
                    status.append(DIVERGED)
                else:
                    status.append(r.status)
                held.append(n)
            if kept:
                groups.append(
                    Group(
                        task,
                        variant,
                        cell[0].family,
                        cell[0].sweep,
                        kept,
                        steps,
                        np.array(curves, float),
                        status,
                        held,
                        np.array(success, float) if np.isfinite(success).all() else None,
                        stage,
                        np.array(scores, float),
                    )
                )
    return groups, notes
