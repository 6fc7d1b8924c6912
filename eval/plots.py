"""Plots for study reports (matplotlib, PNG + PDF): learning curves with shaded 95% t
intervals, a per-task bar chart of normalised scores, both in one overview figure, and sensitivity
(final score against a swept value on the tuning seeds, e.g. the learning rate; paper Fig. 11
style)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, stem: Path, dpi: int = 120) -> list[Path]:
    """The figure as stem.png and stem.pdf."""
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    return paths


def _grid(n: int):
    plt = pyplot()
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return plt, fig, axes.ravel()


def _curve_panel(ax, groups: list, task: str) -> None:
    """Mean return against env steps per optimizer, shaded 95% t interval over seeds; an
    x marks where a diverged (or stopped) seed's last finite evaluation starts being held."""
    from optim4rl.runtime.stats import mean_ci

    for g in (g for g in groups if g.task == task):
        mean, low, high = mean_ci(g.curves)
        held = len(g.diverged) + len(g.stopped)
        label = f"{g.variant} (n={len(g.seeds)}" + (f", {held} diverged)" if held else ")")
        (line,) = ax.plot(g.steps, mean, label=label)
        ax.fill_between(g.steps, low, high, alpha=0.2, color=line.get_color())
        for i, n in enumerate(g.held_from):
            if 0 < n < len(g.steps):
                ax.plot(g.steps[n - 1], g.curves[i, n - 1], "x", color=line.get_color())
    ax.set_title(task)
    ax.set_xlabel("environment steps")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)


def learning_curves(groups: list, stem: Path, *, title: str = "") -> list[Path]:
    """One panel per task: mean return against env steps per optimizer, shaded 95% interval."""
    return _save(learning_curves_figure(groups, title=title), stem)


def _save(fig: Any, stem: Path) -> list[Path]:
    if fig is None:
        return []
    paths = save_figure(fig, stem)
    pyplot().close(fig)
    return paths


def learning_curves_figure(groups: list, *, title: str = "") -> Any:
    """The figure of `learning_curves` (one line per optimizer and task, in `groups` order)."""
    tasks = list(dict.fromkeys(g.task for g in groups))
    plt, fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=False):
        _curve_panel(ax, groups, task)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def score_bars(ax, bars: list[dict[str, Any]]) -> None:
    """Grouped bars: per normalised task, each family's mean normalised score on the evaluation
    seeds with its 95% t interval (0 = the floor, 1 = the tuned reference)."""
    tasks = list(dict.fromkeys(b["task"] for b in bars))
    names = list(dict.fromkeys(b["optimizer"] for b in bars))
    width = 0.8 / max(len(names), 1)
    colors = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    for j, name in enumerate(names):
        for i, task in enumerate(tasks):
            b = next((b for b in bars if b["task"] == task and b["optimizer"] == name), None)
            if b is None:
                continue
            x = i + (j - (len(names) - 1) / 2) * width
            err = [[b["mean"] - b["ci_low"]], [b["ci_high"] - b["mean"]]]
            ax.bar(x, b["mean"], width, yerr=err, capsize=2, color=colors[j % len(colors)],
                   label=name if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right", fontsize=8)
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axhline(1, color="gray", linewidth=0.8, linestyle="--")
    ax.set_ylabel("normalised final score")
    ax.set_title("0 = floor, 1 = tuned reference; 95% t intervals, evaluation seeds", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)


def overview(
    groups: list, bars: list[dict[str, Any]], stem: Path, *, title: str = ""
) -> list[Path]:
    """The study at a glance (`overview_figure`) as PNG and PDF."""
    return _save(overview_figure(groups, bars, title=title), stem)


def overview_figure(groups: list, bars: list[dict[str, Any]], *, title: str = "") -> Any:
    """Learning curves of every task (95% intervals) and, below, the per-task bar chart of
    normalised final scores (`score_bars`) where any task is normalised; None without groups."""
    tasks = list(dict.fromkeys(g.task for g in groups))
    if not tasks:
        return None
    plt = pyplot()
    cols = min(len(tasks), 3)
    rows = math.ceil(len(tasks) / cols)
    extra = 1 if bars else 0
    fig = plt.figure(figsize=(4.2 * cols, 3.2 * rows + 3.6 * extra))
    grid = fig.add_gridspec(rows + extra, cols, height_ratios=[1] * rows + [1.1] * extra)
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        _curve_panel(ax, groups, task)
        if k == 0:
            ax.legend(fontsize=6)
    if bars:
        score_bars(fig.add_subplot(grid[rows, :]), bars)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sensitivity(groups: list, stem: Path, *, last: int = 1, title: str = "") -> list[Path]:
    """Final return (mean +- se) against the swept value of each one-key numeric sweep family;
    unswept optimizers appear as dashed horizontal references. No file when nothing was swept."""
    return _save(sensitivity_figure(groups, last=last, title=title), stem)


def sensitivity_figure(groups: list, *, last: int = 1, title: str = "") -> Any:
    """The figure of `sensitivity`, or None when nothing was swept."""
    from optim4rl.runtime.stats import final_return

    swept = [
        g
        for g in groups
        if len(g.sweep) == 1 and isinstance(next(iter(g.sweep.values())), int | float)
    ]
    if not swept:
        return None
    tasks = list(dict.fromkeys(g.task for g in groups))
    plt, fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks, strict=False):
        families = dict.fromkeys(g.family for g in swept if g.task == task)
        for family in families:
            cell = sorted(
                (g for g in swept if g.task == task and g.family == family),
                key=lambda g: next(iter(g.sweep.values())),
            )
            x = np.array([next(iter(g.sweep.values())) for g in cell], float)
            finals = [final_return(g.score_curves, min(last, g.curves.shape[1])) for g in cell]
            y = np.array([f.mean() for f in finals])
            se = np.array([f.std(ddof=1) / np.sqrt(f.size) if f.size > 1 else 0.0 for f in finals])
            key = next(iter(cell[0].sweep))
            ax.errorbar(x, y, yerr=se, marker="o", capsize=3, label=f"{family} ({key})")
            if np.all(x > 0) and x.max() / x.min() >= 10:
                ax.set_xscale("log")
        for g in (g for g in groups if g.task == task and not g.sweep):
            y = final_return(g.score_curves, min(last, g.curves.shape[1])).mean()
            ax.axhline(y, linestyle="--", linewidth=1, color="gray")
            ax.annotate(g.variant, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_title(task)
        ax.set_xlabel(", ".join(sorted({k for g in swept for k in g.sweep})))
        ax.set_ylabel("final score")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
