"""Runner (real A2C on Catch, results on disk, resume) and report (numbers recomputed directly
from the run files; plots written)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from eval.report import write_report
from eval.runner import ConfigMismatch, run_study
from eval.study import load_study

STUDY = """\
[study]
name = "tiny"
algorithm = "a2c"
tasks = ["catch"]
num_evals = 4
last = 2

[scale.cpu]
preset = "cpu"
seeds = 2
budget = 1600

[scale.paper]
preset = "paper"
seeds = 10
budget = 100_000

[optimizers.adam]
spec = "adam(learning_rate=3e-3)"
"""


@pytest.fixture(scope="module")
def study_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "tiny.toml"
    path.write_text(STUDY)
    out = folder / "out"
    counts = run_study(load_study(path, "cpu"), out, log=lambda *_: None)
    return path, out, counts


def test_runner_writes_every_run(study_out):
    _, out, counts = study_out
    assert counts == {"ran": 2, "skipped": 0, "diverged": 0}
    for seed in (0, 1):
        run = out / "runs" / "catch" / "adam" / f"seed{seed}"
        config = json.loads((run / "config.json").read_text())
        assert config["seed"] == seed and config["optimizer"] == "adam(learning_rate=3e-3)"
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        # 1600 steps = 80 A2C updates of 20 steps, 4 evaluation windows of 20 updates
        assert [r["env_steps"] for r in rows] == [400, 800, 1200, 1600]
        assert all(-1.0 <= r["return"] <= 1.0 for r in rows)  # Catch returns lie in [-1, 1]
        assert json.loads((run / "done.json").read_text())["status"] == "finished"


def test_rerun_skips_finished_and_refuses_changed_config(study_out):
    path, out, _ = study_out
    metrics = out / "runs" / "catch" / "adam" / "seed0" / "metrics.jsonl"
    before = metrics.read_bytes()
    assert run_study(load_study(path, "cpu"), out)["skipped"] == 2
    assert metrics.read_bytes() == before
    changed = path.with_name("changed.toml")
    changed.write_text(STUDY.replace("budget = 1600", "budget = 2000"))
    with pytest.raises(ConfigMismatch, match="different configuration"):
        run_study(load_study(changed, "cpu"), out)
    assert metrics.read_bytes() == before


def test_report_of_real_runs(study_out):
    _, out, _ = study_out
    text = write_report(out)
    finals = []
    for seed in (0, 1):
        lines = (out / "runs/catch/adam" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
        returns = [json.loads(line)["return"] for line in lines]
        finals.append(np.mean(returns[-2:]))
    with open(out / "report" / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["final_mean"]) == pytest.approx(np.mean(finals))
    assert float(row["final_se"]) == pytest.approx(np.std(finals, ddof=1) / np.sqrt(2))
    assert "### catch" in text and "| adam | 2 |" in text
    for name in ("curves.png", "curves.pdf", "report.md", "runs.csv"):
        assert (out / "report" / name).stat().st_size > 0


def _fake_run(out, task, variant, seed, returns, sweep=None, status="finished"):
    run = out / "runs" / task / variant / f"seed{seed}"
    run.mkdir(parents=True)
    family = variant.split("[")[0]
    config = {
        "task": task,
        "variant": variant,
        "family": family,
        "sweep": sweep or {},
        "seed": seed,
    }
    (run / "config.json").write_text(json.dumps(config))
    rows = [{"env_steps": 100 * i, "return": r} for i, r in enumerate(returns)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "done.json").write_text(json.dumps({"status": status}))


def test_report_numbers_and_normalisation(tmp_path):
    """Two tasks, two optimizers, hand-made curves: check final, AUC and normalised scores."""
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "study.json").write_text(json.dumps({"name": "fake", "scale": "cpu", "last": 1}))
    curves = {
        ("a", "sgd[lr=0.1]", 0): [0, 10, 20],
        ("a", "sgd[lr=0.1]", 1): [0, 10, 40],
        ("a", "sgd[lr=1.0]", 0): [0, 0, 10],
        ("a", "sgd[lr=1.0]", 1): [0, 0, 10],
        ("b", "sgd[lr=0.1]", 0): [100, 100, 100],
        ("b", "sgd[lr=0.1]", 1): [100, 100, 100],
        ("b", "sgd[lr=1.0]", 0): [100, 200, 300],
        ("b", "sgd[lr=1.0]", 1): [100, 300, 300],
    }
    for (task, variant, seed), returns in curves.items():
        lr = float(variant[7:-1])
        _fake_run(out, task, variant, seed, returns, sweep={"lr": lr})
    (out / "runs" / "a" / "sgd_lr=0.1_" / "seed2").mkdir(parents=True)  # unfinished: ignored
    text = write_report(out)
    with open(out / "report" / "summary.csv") as f:
        rows = {(r["task"], r["optimizer"]): r for r in csv.DictReader(f)}
    r = rows["a", "sgd[lr=0.1]"]
    assert float(r["final_mean"]) == 30 and float(r["final_se"]) == pytest.approx(10)
    # AUC seed 0: (100*(0+10)/2 + 100*(10+20)/2)/200 = 10; seed 1: (500 + 2500)/200 = 15
    assert float(r["auc_mean"]) == pytest.approx(12.5)
    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    # task a: low 0, high 30; task b: low 100, high 300 (sgd[lr=1.0] final mean)
    # sgd[lr=0.1] scores: a -> 20/30, 40/30; b -> 0, 0; mean = (2/3 + 4/3) / 4 = 0.5
    assert float(agg["sgd[lr=0.1]"]["mean"]) == pytest.approx(0.5)
    # sgd[lr=1.0]: a -> 1/3, 1/3; b -> 1, 1; mean 2/3
    assert float(agg["sgd[lr=1.0]"]["mean"]) == pytest.approx(2 / 3)
    assert "unfinished run skipped" in text
    assert (out / "report" / "sensitivity.png").exists()
    assert (out / "report" / "sensitivity.pdf").exists()


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs/ folder"):
        write_report(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        write_report(tmp_path)


def test_aggregate_leaves_out_tasks_nobody_improved(tmp_path):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    for seed in (0, 1):
        _fake_run(out, "up", "x", seed, [0, 5, 10 + seed])
        _fake_run(out, "up", "y", seed, [0, 2, 4])
        _fake_run(out, "down", "x", seed, [100, 50, 40])  # the untrained agent scores best
        _fake_run(out, "down", "y", seed, [100, 60, 30])
    text = write_report(out)
    assert "Left out: down" in text
    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    assert int(agg["x"]["tasks"]) == 1
    assert float(agg["x"]["mean"]) == pytest.approx(1.0)  # high = x's mean final 10.5
    assert float(agg["y"]["mean"]) == pytest.approx(4 / 10.5)
