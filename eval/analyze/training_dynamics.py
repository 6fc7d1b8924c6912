"""`python -m eval analyze training-dynamics DIR [DIR ...]`: RESeL Figs. 4-5.

Policy and critic gradient norms (total and per module, as resel.train.grad_norms logs them: the
global L2 norm of each top-level module's gradient, averaged over the updates between two
evaluations) and the value (critic) loss over training, per optimizer, mean +- standard error over
seeds (se = std(ddof=1) / sqrt(n)). Inputs: study folders of `python -m eval run` with algorithm
resel (one group per task x optimizer variant), or run folders of `python -m resel --out` (one
group per task x learning rates; seeds are the rows' "seed"). Steps are those every seed of a group
reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.analyze import cli
from eval.analyze.common import (
    AnalysisError,
    out_dir,
    write_csv,
    write_json,
)
from eval.plots import pyplot, save_figure

MODULES = ("context_encoder", "pre_encoder", "obs_encoder", "action_encoder", "head")
REQUIRED = ("critic_loss", "policy/grad_norm/total", "critic/grad_norm/total")
SCALES = {"cpu": "runs/ce_learning_rate-cpu", "paper": "runs/ce_learning_rate-paper"}


@dataclass
class Group:
    """Runs of one (task, optimizer): rows per seed, {seed: [row, ...]} sorted by step."""

    task: str
    variant: str
    source: str
    runs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise AnalysisError(f"{path.parent} has no metrics.jsonl")
    return [json.loads(s) for s in path.read_text().splitlines() if s.strip()]


def _check_metrics(rows: list[dict[str, Any]], where: Path) -> None:
    missing = [k for k in REQUIRED if not any(k in r for r in rows)]
    if missing:
        raise AnalysisError(
            f"{where} lacks the metrics {missing}: a study run before eval/algorithms.py recorded "
            "RESeL's losses and gradient norms; rerun it into a new --out folder (or give a "
            "`python -m resel --out` folder)"
        )


def _lr_label(config: dict[str, Any]) -> str:
    """A short label of a resel config's optimizers: 'CE 1e-05 | policy 3e-4 | critic 1e-3'."""

    def lr(spec: str | None) -> str:
        if spec is None:
            return "-"
        if "learning_rate=" not in spec:
            return spec
        name = spec.split("(")[0]
        value = spec.split("learning_rate=")[1].split(",")[0].split(")")[0]
        return value if name == "adamw" else f"{name} {value}"

    pol, cri = dict(config.get("policy_optim", [])), dict(config.get("critic_optim", []))
    ce_p, ce_c = pol.get("context_encoder"), cri.get("context_encoder")
    ce = f"CE {lr(ce_p)}" if ce_p == ce_c else f"CE {lr(ce_p)}/{lr(ce_c)}"
    if ce_p is None and ce_c is None:
        ce = "CE = rest"
    return f"{ce} | policy {lr(pol.get('default'))} | critic {lr(cri.get('default'))}"


def load_study(folder: Path) -> tuple[list[Group], list[str]]:
    """RESeL groups of a `python -m eval run` folder (its evaluation seeds); notes on what was
    left out."""
    groups: dict[tuple[str, str], Group] = {}
    notes, algorithms = [], set()
    for run in sorted(p for p in (folder / "runs").glob("*/*/*") if p.is_dir()):
        cfg_path = run / "config.json"
        if not cfg_path.exists():
            continue
        cfg = json.loads(cfg_path.read_text())
        algorithms.add(cfg.get("algorithm"))
        if cfg.get("algorithm") != "resel" or cfg.get("stage") == "tuning":
            continue  # a sweep's tuning runs chose a variant; the evaluation seeds are the result
        if not (run / "done.json").exists():
            notes.append(f"unfinished run left out: {run}")
            continue
        rows = [r for r in _read_rows(run / "metrics.jsonl") if "env_steps" in r]
        if json.loads((run / "done.json").read_text()).get("status") != "finished":
            # a diverged run's evaluations before the divergence are what Figs. 4-5 are about
            rows = [r for r in rows if r.get("finite", 1.0)]
            if not rows:
                notes.append(f"diverged run left out (no evaluation before it): {run}")
                continue
            notes.append(f"diverged run, drawn up to step {rows[-1]['env_steps']:g}: {run}")
        _check_metrics(rows, run / "metrics.jsonl")
        key = (cfg["task"], cfg["variant"])
        g = groups.setdefault(key, Group(cfg["task"], cfg["variant"], str(folder)))
        g.runs[int(cfg["seed"])] = sorted(
            ({**r, "step": r["env_steps"]} for r in rows), key=lambda r: r["step"]
        )
    if not groups:
        found = ", ".join(sorted(str(a) for a in algorithms)) or "none"
        extra = f" ({len(notes)} unfinished or diverged)" if notes else ""
        raise AnalysisError(
            f"{folder} holds no finished RESeL runs{extra}; algorithms found: {found}"
        )
    return list(groups.values()), notes


def load_resel_run(folder: Path) -> tuple[list[Group], list[str]]:
    """One group from a `python -m resel --out` folder (all its seeds)."""
    meta = json.loads((folder / "config.json").read_text())
    rows = [r for r in _read_rows(folder / "metrics.jsonl") if "event" not in r]
    _check_metrics(rows, folder / "metrics.jsonl")
    g = Group(meta["env"], _lr_label(meta.get("config", {})), str(folder))
    for r in rows:
        g.runs.setdefault(int(r["seed"]), []).append(r)
    notes = [f"{folder}: diverged ({r['message']})" for r in _read_rows(folder / "metrics.jsonl")
             if r.get("event") == "diverged"]  # fmt: skip
    return [g], notes


def load(paths: list[str]) -> tuple[list[Group], list[str]]:
    """Groups from every input folder (study folders and resel run folders)."""
    groups, notes = [], []
    for p in paths:
        folder = Path(p)
        if not folder.is_dir():
            raise AnalysisError(f"{folder} does not exist (or is not a folder)")
        if (folder / "study.json").exists() and (folder / "runs").is_dir():
            g, n = load_study(folder)
        elif (folder / "config.json").exists() and "env" in json.loads(
            (folder / "config.json").read_text()
        ):
            g, n = load_resel_run(folder)
        else:
            raise AnalysisError(
                f"{folder} is neither a study folder (study.json and runs/ from `python -m eval run`) "
                "nor a RESeL "
                "run folder (config.json with 'env' from `python -m resel --out`)"
            )
        groups += g
        notes += n
    return groups, notes


def metric_names(groups: list[Group]) -> list[str]:
    """critic_loss, then the gradient norms present in the data (total first)."""
    present = {k for g in groups for rows in g.runs.values() for r in rows for k in r}
    names = ["critic_loss"]
    for net in ("policy", "critic"):
        names += [f"{net}/grad_norm/{m}" for m in ("total", *MODULES)
                  if f"{net}/grad_norm/{m}" in present]  # fmt: skip
    return names


def aggregate(group: Group, metric: str) -> dict[str, np.ndarray]:
    """Mean and standard error over seeds at the steps every seed reached.

    -> {"steps": (K,), "values": (seeds, K), "mean": (K,), "se": (K,) (0 for one seed)}.
    """
    by_seed = {
        s: {float(r["step"]): float(r[metric]) for r in rows if r.get(metric) is not None}
        for s, rows in sorted(group.runs.items())
    }
    common = sorted(set.intersection(*(set(d) for d in by_seed.values())))
    values = np.array([[d[t] for t in common] for d in by_seed.values()], float)
    n = values.shape[0]
    if not common:
        se = mean = np.zeros(0)
    else:
        mean = values.mean(axis=0)
        se = values.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return {"steps": np.array(common), "values": values, "mean": mean, "se": se}


def _band(ax, agg, label, **kw):
    (line,) = ax.plot(agg["steps"], agg["mean"], label=label, **kw)
    ax.fill_between(agg["steps"], agg["mean"] - agg["se"], agg["mean"] + agg["se"], alpha=0.2,
                    color=line.get_color())  # fmt: skip


def plot_task(task: str, groups: list[Group], aggs: dict, out: Path) -> list[Path]:
    """dynamics_<task>: policy grad norm, critic grad norm, value loss (log y, Fig. 5);
    modules_<task>: per-module gradient norms of the policy (top) and the critic (bottom)."""
    plt = pyplot()
    files = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    panels = (("policy/grad_norm/total", "policy grad. norm"),
              ("critic/grad_norm/total", "critic grad. norm"), ("critic_loss", "value loss"))  # fmt: skip
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for g in groups:
            _band(ax, aggs[g.variant, g.source, metric], f"{g.variant} (n={len(g.runs)})")
        ax.set_ylabel(label)
        ax.set_xlabel("environment steps")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: gradient norms and value loss (mean +- s.e. over seeds)")
    fig.tight_layout()
    files += save_figure(fig, out / f"dynamics_{_safe(task)}", dpi=130)
    plt.close(fig)
    nets = [n for n in ("policy", "critic") if any(m.startswith(n) for _, _, m in aggs)]
    fig, axes = plt.subplots(len(nets), len(MODULES), figsize=(3.2 * len(MODULES), 3 * len(nets)),
                             squeeze=False)  # fmt: skip
    for i, net in enumerate(nets):
        for j, module in enumerate(MODULES):
            ax = axes[i, j]
            metric = f"{net}/grad_norm/{module}"
            for g in groups:
                if (g.variant, g.source, metric) in aggs:
                    _band(ax, aggs[g.variant, g.source, metric], g.variant)
            ax.set_title(f"{net}: {module}", fontsize=9)
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{task}: gradient norm per module (mean +- s.e.)")
    fig.tight_layout()
    files += save_figure(fig, out / f"modules_{_safe(task)}", dpi=130)
    plt.close(fig)
    return files


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def analyse(groups: list[Group]) -> tuple[dict, list[list[Any]], list[dict[str, Any]]]:
    """Aggregates per (variant, source, metric), the CSV rows and a summary per group."""
    metrics = metric_names(groups)
    aggs, rows, summary = {}, [], []
    for g in groups:
        entry = {"task": g.task, "variant": g.variant, "source": g.source,
                 "seeds": sorted(g.runs)}  # fmt: skip
        for m in metrics:
            a = aggregate(g, m)
            if a["steps"].size == 0:
                continue
            aggs[g.variant, g.source, m] = a
            for t, mu, se in zip(a["steps"], a["mean"], a["se"], strict=True):
                rows.append([g.task, g.variant, m, float(t), a["values"].shape[0], mu, se])
            half = a["mean"][len(a["mean"]) // 2 :]
            entry[m] = {"mean": float(a["mean"].mean()), "max": float(a["mean"].max()),
                        "final": float(a["mean"][-1]), "second_half_mean": float(half.mean()),
                        "second_half_cv": float(half.std() / half.mean()) if half.mean() else None}  # fmt: skip
        summary.append(entry)
    return aggs, rows, summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    return cli.training_dynamics().parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t0 = time.time()
    try:
        groups, notes = load(args.folders or [SCALES[args.scale]])
        if args.variants:
            groups = [g for g in groups if any(v in g.variant for v in args.variants)]
            if not groups:
                raise AnalysisError(f"no variant matches {args.variants}")
        out = out_dir(args.out, f"runs/analyze/training-dynamics-{args.scale}")
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    aggs, rows, summary = analyse(groups)
    files = [write_csv(out / "dynamics.csv",
                       ["task", "variant", "metric", "step", "seeds", "mean", "se"], rows)]  # fmt: skip
    files.append(write_json(out / "summary.json", {"groups": summary, "notes": notes}))
    by_task = defaultdict(list)
    for g in groups:
        by_task[g.task].append(g)
    for task, gs in by_task.items():
        files += plot_task(task, gs, aggs, out)
    for n in notes:
        print(f"note: {n}")
    print(f"{'task':<12} {'variant':<36} {'seeds':>5} {'pi_grad mean':>12} {'pi_grad max':>12} "
          f"{'q_loss mean':>12} {'q_loss max':>12} {'q_loss final':>12}")  # fmt: skip
    for s in summary:
        pg, ql = s.get("policy/grad_norm/total", {}), s.get("critic_loss", {})
        print(f"{s['task']:<12} {s['variant'][:36]:<36} {len(s['seeds']):>5} "
              f"{pg.get('mean', float('nan')):12.4g} {pg.get('max', float('nan')):12.4g} "
              f"{ql.get('mean', float('nan')):12.4g} {ql.get('max', float('nan')):12.4g} "
              f"{ql.get('final', float('nan')):12.4g}")  # fmt: skip
    print(f"wrote {len(files)} files to {out} ({time.time() - t0:.1f} s)")
    return 0
