"""Run a study: every (task, optimizer) cell with its seeds vmapped, results written per run.

Layout under OUT: study.json (the resolved study), and per run
runs/<task>/<variant>/seed<k>/{config.json, metrics.jsonl, done.json}. metrics.jsonl gets one JSON
row per evaluation as it happens; done.json (written last, atomically) marks a finished run, so a
re-run skips finished runs and redoes unfinished ones from the start.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from eval.study import Study
from optim4rl.checkpoint import atomic_write_bytes

DONE = "done.json"


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` via a temporary file, fsync and rename: never a half-written file."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())


def safe_name(name: str) -> str:
    """A folder name for a task or variant label ("adam[lr=0.001]" -> "adam_lr=0.001_")."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", name)


def run_dir(out: Path, task: str, variant: str, seed: int) -> Path:
    return out / "runs" / safe_name(task) / safe_name(variant) / f"seed{seed}"


def run_config(study: Study, task: str, variant, seed: int) -> dict[str, Any]:
    """What config.json records: everything that determines the run's results."""
    return {
        "study": study.name,
        "algorithm": study.algorithm,
        "scale": study.scale,
        "preset": study.preset,
        "config": study.config,
        "budget": study.budget,
        "num_evals": study.num_evals,
        "task": task,
        "variant": variant.name,
        "family": variant.family,
        "optimizer": variant.spec,
        "sweep": variant.values,
        "seed": seed,
    }


class ConfigMismatch(RuntimeError):
    """A finished run in the output folder was made with a different configuration."""


def run_study(study: Study, out: str | Path, *, log=print) -> dict[str, int]:
    """Run every unfinished run of `study` into `out`; returns counts {ran, skipped, diverged}."""
    from eval.algorithms import get_algorithm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "study.json", study.to_json())
    algorithm = get_algorithm(study.algorithm)
    counts = {"ran": 0, "skipped": 0, "diverged": 0}
    cells = [(t, v) for t in study.tasks for v in study.variants]
    for task, variant in tqdm(cells, desc=study.name, unit="cell"):
        todo = []
        for seed in study.seeds:
            folder = run_dir(out, task, variant.name, seed)
            config = run_config(study, task, variant, seed)
            if (folder / DONE).exists():
                old = json.loads((folder / "config.json").read_text())
                if old != config:
                    raise ConfigMismatch(
                        f"{folder} holds a finished run made with a different configuration; "
                        "give a new --out folder or delete that run"
                    )
                counts["skipped"] += 1
                continue
            todo.append((seed, folder, config))
        if not todo:
            continue
        files = []
        for _, folder, config in todo:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / "config.json", config)
            files.append(open(folder / "metrics.jsonl", "w"))  # noqa: SIM115 - closed below
        finite = [True] * len(todo)

        def on_eval(i: int, row: dict[str, float], files=files, finite=finite) -> None:
            finite[i] = finite[i] and bool(row.get("finite", 1.0))
            files[i].write(json.dumps(row) + "\n")
            files[i].flush()

        start = time.time()
        try:
            algorithm.run_cell(
                task=task,
                preset=study.preset,
                overrides=study.config,
                budget=study.budget,
                num_evals=study.num_evals,
                optimizer=algorithm.build_optimizer(variant.spec),
                seeds=[seed for seed, _, _ in todo],
                on_eval=on_eval,
                desc=f"{task} / {variant.name}",
            )
        finally:
            for f in files:
                f.close()
        seconds = time.time() - start
        for (seed, folder, _), ok in zip(todo, finite, strict=True):
            status = "finished" if ok else "diverged"
            if not ok:
                counts["diverged"] += 1
                log(
                    f"warning: {task} / {variant.name} / seed {seed}: non-finite parameters or loss"
                )
            atomic_write_json(folder / DONE, {"status": status, "cell_seconds": seconds})
            counts["ran"] += 1
    return counts


def main(argv: list[str]) -> int:
    """`python -m eval run STUDY [--out DIR] [--scale cpu|paper] [--no-report]`."""
    import argparse

    from eval.study import StudyError, load_study, shipped_studies

    parser = argparse.ArgumentParser(
        prog="python -m eval run",
        description="Run a study (a TOML file or a shipped study: "
        + ", ".join(shipped_studies())
        + ")",
    )
    parser.add_argument("study", help="path to a study .toml, or the name of a shipped study")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<name>-<scale>)")
    parser.add_argument(
        "--scale", default="cpu", choices=("cpu", "paper"), help="the study's scale (default cpu)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not write the report after")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study, args.scale)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"runs/{study.name}-{study.scale}")
    print(
        f"study {study.name} ({study.scale}): {len(study.tasks)} task(s) x {len(study.variants)} "
        f"optimizer(s) x {len(study.seeds)} seed(s) -> {out}"
    )
    counts = run_study(study, out)
    print(
        f"ran {counts['ran']} run(s), skipped {counts['skipped']} finished, "
        f"{counts['diverged']} diverged"
    )
    if not args.no_report:
        from eval.report import write_report

        print(write_report(out))
    return 0
