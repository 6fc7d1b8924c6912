"""Plots for study reports (matplotlib, PNG + PDF): learning curves with shaded standard error,
and sensitivity (final return against a swept value, e.g. the learning rate; paper Fig. 11 style)."""

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


def learning_curves(groups: list, stem: Path, *, title: str = "") -> list[Path]:
    """One panel per task: mean return against env steps per optimizer, shaded +- standard error."""
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
        for g in (g for g in groups if g.task == task):
            mean = g.curves.mean(axis=0)
            n = g.curves.shape[0]
            se = g.curves.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
            (line,) = ax.plot(g.steps, mean, label=f"{g.variant} (n={n})")
            ax.fill_between(g.steps, mean - se, mean + se, alpha=0.2, color=line.get_color())
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sensitivity(groups: list, stem: Path, *, last: int = 1, title: str = "") -> list[Path]:
    """Final return (mean +- se) against the swept value of each one-key numeric sweep family;
    unswept optimizers appear as dashed horizontal references. No file when nothing was swept."""
    return _save(sensitivity_figure(groups, last=last, title=title), stem)


def sensitivity_figure(groups: list, *, last: int = 1, title: str = "") -> Any:
    """The figure of `sensitivity`, or None when nothing was swept."""
    from eval.stats import final_return

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
            finals = [final_return(g.curves, min(last, g.curves.shape[1])) for g in cell]
            y = np.array([f.mean() for f in finals])
            se = np.array([f.std(ddof=1) / np.sqrt(f.size) if f.size > 1 else 0.0 for f in finals])
            key = next(iter(cell[0].sweep))
            ax.errorbar(x, y, yerr=se, marker="o", capsize=3, label=f"{family} ({key})")
            if np.all(x > 0) and x.max() / x.min() >= 10:
                ax.set_xscale("log")
        for g in (g for g in groups if g.task == task and not g.sweep):
            y = final_return(g.curves, min(last, g.curves.shape[1])).mean()
            ax.axhline(y, linestyle="--", linewidth=1, color="gray")
            ax.annotate(g.variant, (0.01, y), xycoords=("axes fraction", "data"), fontsize=7)
        ax.set_title(task)
        ax.set_xlabel(", ".join(sorted({k for g in swept for k in g.sweep})))
        ax.set_ylabel(f"final return (last {last})")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
