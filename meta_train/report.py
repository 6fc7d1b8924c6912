"""The files `python -m meta_train evaluate` and `baselines` write: the Markdown report, the CSV
table and the strict JSON of a `meta_train.protocol.compare_families` payload (numbers printed by
optim4rl.runtime.numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from meta_train.protocol import FLOOR
from optim4rl.container import atomic_write_bytes as atomic_write
from optim4rl.runtime.numbers import NONE, bracket, g3, pm, seed_list


def diverged_text(r: dict) -> str:
    d = r.get("diverged", [])
    return f"{len(d)} of {r['n']} (seeds {seed_list(d)})" if d else "0"


def candidates_text(r: dict) -> str:
    n = len(r["candidates"])
    if n > 1:
        return f"{n} (chosen on the tuning seeds)"
    return f"1: {r['note']}" if r.get("note") else "1"


def markdown(title: str, header: list[str], payload: dict) -> str:
    """The report: header lines, results on the evaluation seeds, claims, winners, normalisation,
    the tuning table."""
    results, comp = payload["results"], payload["comparison"]
    norm = comp["normalised"]
    md = [f"# {title}", "", *[f"- {line}" for line in header], ""]
    md += [
        "## Results (evaluation seeds)",
        "",
        "The final score of each evaluation seed (above); mean ± standard error over seeds, "
        "Student-t interval; normalised: random = 0, tuned adam = 1, on the tasks where adam is "
        "separated above random (below).",
        "",
        "| task | family | lr | candidates | seeds | diverged | mean ± s.e. | 95% t interval "
        "| normalised mean [95% t] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, per in results.items():
        for name, r in per.items():
            nr = norm.get(task, {}).get(name)
            ncell = f"{g3(nr['mean'])} {bracket(*nr['ci95'])}" if nr else NONE
            md.append(
                f"| {task} | {name} | {g3(r['lr'])} | {candidates_text(r)} | {r['n']} "
                f"({seed_list(r['seeds'])}) | {diverged_text(r)} | {pm(r['mean'], r['se'])} "
                f"| {bracket(*r['ci95'])} | {ncell} |"
            )
    claims = comp["claims"]
    md += ["", "## Claims", ""]
    if claims:
        md += [
            f"Differences a − b paired by seed, Student-t intervals at the simultaneous level "
            f"{100 * comp['level']:.3g}% (Bonferroni over {len(claims)} claim(s): all hold together "
            "with probability 95%); P(a > b): rliable's probability of improvement.",
            "",
            "| task | a − b | n | difference [interval] | P(a > b) | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for k in claims:
            md.append(
                f"| {k['task']} | {k['a']} − {k['b']} | {k['n']} | {g3(k['difference'])} "
                f"{bracket(k['low'], k['high'])} | {g3(k['improvement'])} | {k['verdict']} |"
            )
    else:
        md.append("No claims (one family per task).")
    md += ["", "## Winners", ""]
    for task, winner in comp["winners"].items():
        why = comp["reasons"].get(task, "")
        md.append(f"- {task}: **{winner}** ({why})" if winner else f"- {task}: none ({why})")
    md += ["", "## Normalisation", ""]
    for task in results:
        if task in norm:
            md.append(f"- {task}: normalised (adam is separated above random)")
        else:
            md.append(f"- {task}: not normalised: {comp['unused'].get(task, '')}")
    agg = comp["normalised_all"]
    if len(agg["tasks"]) >= 2:
        for name, v in agg.items():
            if name != "tasks":
                md.append(
                    f"- over the {len(agg['tasks'])} normalised tasks, per (task, seed): {name} "
                    f"{g3(v['mean'])} {bracket(*v['ci95'])} (n = {v['n']})"
                )
    md += _tuning_table(results)
    return "\n".join(md) + "\n"


def _tuning_table(results: dict) -> list[str]:
    md = [
        "",
        "## Tuning (tuning seeds; the selection only, not results)",
        "",
        "| task | family | lr | seeds | mean ± s.e. | diverged | |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, per in results.items():
        for name, r in per.items():
            if not r["tuning"]:
                md.append(
                    f"| {task} | {name} | {g3(r['lr'])} | {NONE} | {NONE} | {NONE} | 1 candidate, not run "
                    f"here: {r['note'] or 'not swept'} |"
                )
                continue
            for label, t in r["tuning"].items():
                mark = "reference (not selected)" if name == FLOOR else ""
                if name != FLOOR and label == f"{r['lr']:g}":
                    mark = "**chosen**"
                md.append(
                    f"| {task} | {name} | {label} | {t['n']} ({seed_list(t['seeds'])}) "
                    f"| {pm(t['mean'], t['se'])} | {diverged_text(t)} | {mark} |"
                )
    return md


CSV_HEAD = [
    "task", "family", "lr", "candidates", "seeds", "diverged", "mean", "se", "ci95_low",
    "ci95_high", "normalised_mean", "normalised_ci95_low", "normalised_ci95_high",
]  # fmt: skip


def csv_text(payload: dict) -> str:
    """One row per (task, family) on the evaluation seeds, full precision."""
    norm = payload["comparison"]["normalised"]
    rows = [",".join(CSV_HEAD)]
    for task, per in payload["results"].items():
        for name, r in per.items():
            nr = norm.get(task, {}).get(name, {"mean": None, "ci95": [None, None]})
            cells = [task, name, r["lr"], len(r["candidates"]), r["n"], len(r["diverged"]),
                     r["mean"], r["se"], *r["ci95"], nr["mean"], *nr["ci95"]]  # fmt: skip
            rows.append(",".join("" if c is None else str(c) for c in cells))
    return "\n".join(rows) + "\n"


def json_safe(x: Any) -> Any:
    """NaN and infinities as null, so the files are strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


def write_outputs(out: Path, stem: str, title: str, header_lines: list[str], payload: dict) -> str:
    """stem.json, stem.md and stem.csv into `out` (each atomically); returns the Markdown."""
    payload = json_safe(payload)
    md = markdown(title, header_lines, payload)
    atomic_write(out / f"{stem}.json", json.dumps(payload, indent=1).encode())
    atomic_write(out / f"{stem}.md", md.encode())
    atomic_write(out / f"{stem}.csv", csv_text(payload).encode())
    return md
