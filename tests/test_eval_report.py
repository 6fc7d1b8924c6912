"""Runner (real A2C on Catch, results on disk, resume) and report (numbers recomputed directly
from the run files; plots written)."""

from __future__ import annotations

import csv
import json
import shutil

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
floor = "random"
reference = "adam"

[scale.cpu]
preset = "cpu"
seeds = 2
tuning_seeds = 2
budget = 1600

[scale.paper]
preset = "paper"
seeds = 10
tuning_seeds = 10
budget = 100_000

[optimizers.adam]
spec = "adam(learning_rate={lr})"
sweep = { lr = [3e-3, 3e-2] }

[optimizers.sgd]                  # diverges after about 30 updates on every seed
spec = "sgd(learning_rate=30.0)"

[optimizers.random]
spec = "sgd(learning_rate=0.0)"
"""


@pytest.fixture(scope="module")
def study_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    path = folder / "tiny.toml"
    path.write_text(STUDY)
    out = folder / "out"
    counts = run_study(load_study(path, "cpu"), out, log=lambda *_: None)
    return path, out, counts


def _rows(out, variant, seed):
    text = (out / "runs" / "catch" / variant / f"seed{seed}" / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_runner_chooses_on_tuning_seeds_and_reports_fresh_ones(study_out):
    _, out, counts = study_out
    # tuning: 2 candidates x 2 seeds; evaluation: chosen adam, sgd, random x 2 seeds
    assert counts == {"ran": 10, "skipped": 0, "diverged": 2}
    runs = out / "runs" / "catch"
    tuning = {"adam_lr=0.003_": None, "adam_lr=0.03_": None}
    for name in tuning:
        assert {"seed1000", "seed1001"} <= {p.name for p in (runs / name).iterdir()}
        for seed in (1000, 1001):
            config = json.loads((runs / name / f"seed{seed}" / "config.json").read_text())
            assert config["stage"] == "tuning" and config["seed"] == seed
        # the authors' score of a run: the agent's "score" at its last evaluation
        tuning[name] = np.mean([_rows(out, name, s)[-1]["score"] for s in (1000, 1001)])
    best = max(tuning, key=tuning.get)
    other = min(tuning, key=tuning.get)
    assert tuning[best] > tuning[other]
    for seed in (0, 1):
        assert (runs / best / f"seed{seed}" / "done.json").exists()
        assert not (runs / other / f"seed{seed}").exists()
        rows = _rows(out, best, seed)
        # 1600 steps = 80 A2C updates of 20 steps, 4 evaluation windows of 20 updates
        assert [r["env_steps"] for r in rows] == [400, 800, 1200, 1600]
        assert all(-1.0 <= r["return"] <= 1.0 and -1.0 <= r["score"] <= 1.0 for r in rows)
        config = json.loads((runs / best / f"seed{seed}" / "config.json").read_text())
        assert config["stage"] == "evaluation"
    assert not (runs / "sgd" / "seed1000").exists() and (runs / "random" / "seed1").exists()
    study = json.loads((out / "study.json").read_text())
    chosen = best.replace("_lr=", "[lr=").rstrip("_") + "]"
    assert study["selection"] == [{"task": "catch", "family": "adam", "chosen": chosen}]


def test_rerun_skips_finished_and_refuses_changed_config(study_out):
    path, out, _ = study_out
    metrics = out / "runs" / "catch" / "random" / "seed0" / "metrics.jsonl"
    before = metrics.read_bytes()
    plan = (out / "study.json").read_bytes()
    assert run_study(load_study(path, "cpu"), out)["skipped"] == 10
    assert metrics.read_bytes() == before and (out / "study.json").read_bytes() == plan
    changed = path.with_name("changed.toml")
    changed.write_text(STUDY.replace("budget = 1600", "budget = 2000"))
    with pytest.raises(ConfigMismatch, match="different configuration"):
        run_study(load_study(changed, "cpu"), out)
    # refused before anything was written: the runs and the plan the report reads are intact
    assert metrics.read_bytes() == before and (out / "study.json").read_bytes() == plan


def test_report_of_real_runs(study_out):
    from scipy import stats as scipy_stats

    _, out, _ = study_out
    text = write_report(out)
    chosen = json.loads((out / "study.json").read_text())["selection"][0]["chosen"]
    folder = chosen.replace("[", "_").replace("]", "_")
    adam = np.array([_rows(out, folder, s)[-1]["score"] for s in (0, 1)])
    random = np.array([_rows(out, "random", s)[-1]["score"] for s in (0, 1)])
    with open(out / "report" / "summary.csv") as f:
        rows = {(r["optimizer"], r["stage"]): r for r in csv.DictReader(f)}
    row = rows[chosen, "evaluation"]
    assert float(row["final_mean"]) == pytest.approx(adam.mean())
    assert float(row["final_se"]) == pytest.approx(np.std(adam, ddof=1) / np.sqrt(2))
    half = scipy_stats.t.ppf(0.975, 1) * np.std(adam, ddof=1) / np.sqrt(2)
    assert float(row["final_ci_high"]) == pytest.approx(adam.mean() + half)
    assert "### catch (evaluation seeds)" in text and f"| adam | {chosen} (2) | 2 |" in text
    # sgd diverged on both seeds: each counts with its last finite score held to the end
    held = []
    for seed in (0, 1):
        rows_ = _rows(out, "sgd", seed)
        valid = rows_[: [r["finite"] for r in rows_].index(0.0)]
        assert len(valid) < 4  # the A2C adapter flags the windows from the divergence on
        held.append(valid[-1]["score"] if valid else np.nan)
    assert np.all(np.isfinite(held)), "sgd lr 30 should diverge after the first window"
    sgd = rows["sgd", "evaluation"]
    assert int(sgd["seeds"]) == 2 and int(sgd["diverged"]) == 2
    assert float(sgd["final_mean"]) == pytest.approx(np.mean(held))
    assert "| sgd | sgd (1) | 2 (2 diverged) |" in text
    with open(out / "report" / "claims.csv") as f:
        claims = {(r["a"], r["b"]): r for r in csv.DictReader(f)}
    claim = claims["adam", "random"]
    assert float(claim["difference"]) == pytest.approx((adam - random).mean())
    assert int(claim["pairs"]) == 2 and claim["candidates_a"] == "2"
    for name in ("curves.png", "curves.pdf", "report.md", "runs.csv", "tuning.csv"):
        assert (out / "report" / name).stat().st_size > 0


def _fake_run(out, task, variant, seed, returns, sweep=None, status="finished", success=None,
              stage="evaluation"):  # fmt: skip
    run = out / "runs" / task / variant / f"seed{seed}"
    run.mkdir(parents=True)
    family = variant.split("[")[0]
    config = {
        "task": task,
        "variant": variant,
        "family": family,
        "sweep": sweep or {},
        "seed": seed,
        "stage": stage,
    }
    (run / "config.json").write_text(json.dumps(config))
    rows = [{"env_steps": 100 * i, "return": r} for i, r in enumerate(returns)]
    for row, rate in zip(rows, success or [], strict=False):
        row["success"] = rate
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "done.json").write_text(json.dumps({"status": status}))


# task -> family -> evaluation seed -> final return (hand-made); adam's variant is the one its
# tuning runs choose (TUNING below)
EVALUATION = {
    "a": {
        "adam[lr=0.1]": [10, 11, 12, 10, 11, 12],
        "random": [0, 1, 0, 1, 0, 1],
        "o4rl": [5, 7, 6, 6, 5, 7],
    },
    "b": {
        "adam[lr=1.0]": [20, 22, 27, 21, 20, 22],
        "random": [2, 1, 3, 2, 1, 3],
        "o4rl": [30, 35, 31, 20, 28, 33],
    },
    "c": {"adam[lr=0.1]": [1, 0, 2, 1, 0, 2], "random": [1, 1, 1, 0, 2, 1], "o4rl": [0] * 6},
}
TUNING = {  # task -> candidate -> tuning seeds 10, 11 final return
    "a": {"adam[lr=0.1]": [5, 7], "adam[lr=1.0]": [1, 2]},
    "b": {"adam[lr=0.1]": [1, 1], "adam[lr=1.0]": [3, 4]},
    "c": {"adam[lr=0.1]": [3, 3], "adam[lr=1.0]": [2, 3]},
}


@pytest.fixture
def hand_study(tmp_path):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    study = {"name": "fake", "scale": "cpu", "last": 1, "floor": "random", "reference": "adam",
             "seeds": list(range(6)), "tuning_seeds": [10, 11]}  # fmt: skip
    (out / "study.json").write_text(json.dumps(study))
    for task, fams in TUNING.items():
        for variant, finals in fams.items():
            for seed, final in zip((10, 11), finals, strict=True):
                lr = float(variant[8:-1])
                _fake_run(out, task, variant, seed, [0, final], {"lr": lr}, stage="tuning")
    for task, fams in EVALUATION.items():
        for variant, finals in fams.items():
            sweep = {"lr": float(variant[8:-1])} if "[" in variant else None
            for seed, final in enumerate(finals):
                _fake_run(out, task, variant, seed, [0, final], sweep)
    return out


def test_report_numbers_claims_and_normalisation_by_hand(hand_study):
    from scipy import stats as scipy_stats

    out = hand_study
    text = write_report(out)
    with open(out / "report" / "tuning.csv") as f:
        tuning = {(r["task"], r["candidate"]): r["chosen"] == "True" for r in csv.DictReader(f)}
    assert tuning == {("a", "adam[lr=0.1]"): True, ("a", "adam[lr=1.0]"): False,
                      ("b", "adam[lr=0.1]"): False, ("b", "adam[lr=1.0]"): True,
                      ("c", "adam[lr=0.1]"): True, ("c", "adam[lr=1.0]"): False}  # fmt: skip
    with open(out / "report" / "summary.csv") as f:
        summary = {(r["task"], r["optimizer"], r["stage"]): r for r in csv.DictReader(f)}
    a = np.array(EVALUATION["a"]["adam[lr=0.1]"], float)
    row = summary["a", "adam[lr=0.1]", "evaluation"]
    assert float(row["final_mean"]) == pytest.approx(a.mean())
    assert float(row["final_se"]) == pytest.approx(a.std(ddof=1) / np.sqrt(6))
    low, high = scipy_stats.t.interval(0.95, 5, a.mean(), a.std(ddof=1) / np.sqrt(6))
    assert float(row["final_ci_low"]) == pytest.approx(low)
    assert float(row["final_ci_high"]) == pytest.approx(high)
    assert float(summary["a", "adam[lr=1.0]", "tuning"]["final_mean"]) == pytest.approx(1.5)

    # 3 tasks x 3 pairs (each family vs random, o4rl vs adam; the best family's pairs are among
    # them) + o4rl vs adam on the normalised tasks = 10 claims, Bonferroni level 1 - 0.05 / 10
    with open(out / "report" / "claims.csv") as f:
        claims = {(r["task"], r["a"], r["b"]): r for r in csv.DictReader(f)}
    assert len(claims) == 10
    level = 1 - 0.05 / 10
    for (task, x, y), claim in claims.items():
        assert float(claim["level"]) == pytest.approx(level)
        if task not in EVALUATION:
            continue
        fx = np.array(next(v for k, v in EVALUATION[task].items() if k.startswith(x)), float)
        fy = np.array(next(v for k, v in EVALUATION[task].items() if k.startswith(y)), float)
        ci = scipy_stats.ttest_rel(fx, fy).confidence_interval(level)
        assert float(claim["ci_low"]) == pytest.approx(ci.low), (task, x, y)
        assert float(claim["ci_high"]) == pytest.approx(ci.high)
        wins = sum((i > j) + 0.5 * (i == j) for i in fx for j in fy) / 36
        assert float(claim["p_improvement"]) == pytest.approx(wins)
        expected = f"{x} > {y}" if ci.low > 0 else f"{x} < {y}" if ci.high < 0 else "not separated"
        assert claim["verdict"] == expected
    assert claims["a", "adam", "random"]["verdict"] == "adam > random"
    assert claims["c", "adam", "random"]["verdict"] == "not separated"

    # normalised (random = 0, tuned adam = 1) on a and b only: c's adam is not above random
    with open(out / "report" / "task_scores.csv") as f:
        bars = {(r["task"], r["optimizer"]): r for r in csv.DictReader(f)}
    assert {t for t, _ in bars} == {"a", "b"}
    for task in ("a", "b"):
        fams = {k.split("[")[0]: np.array(v, float) for k, v in EVALUATION[task].items()}
        lo, hi = fams["random"].mean(), fams["adam"].mean()
        o4rl = (fams["o4rl"] - lo) / (hi - lo)
        assert float(bars[task, "o4rl"]["mean"]) == pytest.approx(o4rl.mean())
        assert float(bars[task, "adam"]["mean"]) == pytest.approx(1.0)
    assert "Not normalised: adam is not separated above random." in text.split("### c")[1]
    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    assert int(agg["o4rl"]["seeds"]) == 12 and int(agg["o4rl"]["tasks"]) == 2
    # a winner needs its best family separated from every other and from the floor
    assert "Winner: **none** (the best mean (adam) is not separated from random, o4rl)" in text
    assert "Winner: **none** (the best mean (o4rl) is not separated from adam)" in text
    assert "Winner: **adam** (adam is separated above every other family and the floor)" in text
    assert "| a | adam − random | 2/1 | 6 |" in text


def test_report_gives_the_success_rate_where_runs_report_one(tmp_path):
    """Runs with a "success" rate (RESeL on Key-to-Door) get a final success rate beside the final
    return (summary.csv and a column of their task's table); tasks without one do not."""
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / "study.json").write_text(json.dumps({"name": "fake", "scale": "cpu", "last": 2}))
    for seed, rates in enumerate(([0.0, 0.5, 1.0], [0.0, 0.0, 0.5])):
        _fake_run(out, "KeyToDoor-60", "adam", seed, [1, 2, 3], success=rates)
        _fake_run(out, "catch", "adam", seed, [0, 1, 1])
    text = write_report(out)
    with open(out / "report" / "summary.csv") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    # mean of the last 2 evaluations per seed: 0.75 and 0.25
    assert float(rows["KeyToDoor-60"]["final_success_mean"]) == pytest.approx(0.5)
    assert float(rows["KeyToDoor-60"]["final_success_se"]) == pytest.approx(0.25)
    assert np.isnan(float(rows["catch"]["final_success_mean"]))
    key_table, catch_table = text.split("### KeyToDoor-60")[1], text.split("### catch")[1]
    assert "final success rate |" in key_table.split("###")[0]
    assert "| 0.5 ± 0.25 |" in key_table.split("###")[0]
    assert "final success rate" not in catch_table.split("###")[0]


def test_report_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no runs/ folder"):
        write_report(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        write_report(tmp_path)


NOISE_STUDY = """\
[study]
name = "noise"
algorithm = "a2c"
tasks = ["catch", "small_dense_short", "big_dense_short"]
num_evals = 3
last = 1

[scale.cpu]
preset = "cpu"
seeds = 3
budget = 1200

[scale.paper]
preset = "paper"
seeds = 3
budget = 1200

[optimizers.adam]
spec = "adam(learning_rate=1e-3)"

[optimizers.rmsprop]
spec = "rmsprop(learning_rate=1e-3)"
"""

# (task, optimizer) -> per seed [first, middle, final] return. big_dense_short's gap is noise:
# low = 0, high = adam's mean final 1 with SE 5/sqrt(3) = 2.9, so gap 1 < 2 SE.
NOISE_CURVES = {
    ("catch", "adam"): [[0.1, 0.5, 0.9], [-0.1, 0.4, 0.8], [0.0, 0.6, 1.0]],
    ("catch", "rmsprop"): [[0.0, 0.2, 0.5], [0.1, 0.3, 0.6], [-0.1, 0.1, 0.4]],
    ("small_dense_short", "adam"): [[1, 5, 10], [2, 6, 11], [3, 7, 12]],
    ("small_dense_short", "rmsprop"): [[2, 3, 6], [2, 4, 7], [2, 5, 8]],
    ("big_dense_short", "adam"): [[0, 0, 1], [5, 0, -4], [-5, 0, 6]],
    ("big_dense_short", "rmsprop"): [[1, 0, -2], [-1, 0, 3], [0, 0, 0]],
}


def _write_study_results(folder, curves):
    """Results exactly as `eval run` leaves them (its own writers), without training."""
    from eval.runner import DONE, atomic_write_json, run_config, run_dir

    path = folder / "noise.toml"
    path.write_text(NOISE_STUDY)
    study = load_study(path, "cpu")
    out = folder / "out"
    atomic_write_json(out / "study.json", study.to_json())
    for variant in study.variants:
        for task in study.tasks:
            for seed in study.seeds:
                run = run_dir(out, task, variant.name, seed)
                run.mkdir(parents=True)
                config = run_config(study, task, variant, seed, "evaluation")
                atomic_write_json(run / "config.json", config)
                rows = [
                    {"env_steps": 400 * (i + 1), "return": float(r), "score": float(r)}
                    for i, r in enumerate(curves[task, variant.name][seed])
                ]
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                atomic_write_json(run / DONE, {"status": "finished", "cell_seconds": 0.0})
    return out


def _group(task, variant, curves, sweep=None):
    from eval.report import Group

    curves = np.asarray(curves, float)
    steps = 100.0 * np.arange(curves.shape[1])
    family = variant.split("[")[0]
    return Group(task, variant, family, sweep or {}, list(range(len(curves))), steps, curves)


def test_plots_draw_the_hand_computed_numbers(tmp_path):
    import matplotlib.image

    from eval import plots

    # mean 1, 2, 3; two seeds 2 apart: the 95% t band is mean ± t(0.975, 1) * 1
    adam = _group("a", "adam", [[0, 1, 2], [2, 3, 4]])
    sgd = [
        _group("a", f"sgd[lr={lr}]", [[0, 0, f], [0, 0, f + 2]], {"lr": lr})
        for lr, f in ((1.0, 10.0), (0.1, 4.0))  # finals: mean f + 1, se 1
    ]
    fig = plots.learning_curves_figure([adam, *sgd], title="t")
    ax = fig.axes[0]
    line = ax.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0, 100, 200])
    np.testing.assert_allclose(line.get_ydata(), [1, 2, 3])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = 12.706204736  # scipy.stats.t.ppf(0.975, 1)
    assert band.min() == pytest.approx(1 - half) and band.max() == pytest.approx(3 + half)
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "adam (n=2)"
    plots.pyplot().close(fig)

    fig = plots.sensitivity_figure([adam, *sgd], last=1)
    ax = fig.axes[0]
    swept = ax.lines[0]  # the errorbar's line, sorted by learning rate
    np.testing.assert_allclose(swept.get_xdata(), [0.1, 1.0])
    np.testing.assert_allclose(swept.get_ydata(), [5.0, 11.0])
    assert ax.get_xscale() == "log"  # the swept values span a factor 10
    reference = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [ln.get_ydata()[0] for ln in reference] == [pytest.approx(3.0)]  # adam's final mean
    plots.pyplot().close(fig)
    assert plots.sensitivity_figure([adam]) is None  # nothing swept: no figure, no file

    png, pdf = plots.learning_curves([adam, *sgd], tmp_path / "curves")
    assert pdf.read_bytes().startswith(b"%PDF")
    pixels = matplotlib.image.imread(png)[..., :3]
    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):  # the three optimizers' lines
        rgb = np.array(matplotlib.colors.to_rgb(colour))
        assert np.sum(np.all(np.abs(pixels - rgb) < 0.02, axis=-1)) > 50, colour


NAN = float("nan")
# (task, optimizer) -> per seed [(return, finite), ...]; rmsprop diverges on catch seed 1 after
# its second evaluation and on small_dense_short seed 2 before its first; adam's seed 2 on
# small_dense_short never finished (no done.json).
DIVERGING = {
    ("catch", "adam"): [[(0, 1), (0.5, 1), (1.0, 1)], [(0, 1), (0.4, 1), (0.8, 1)],
                        [(0, 1), (0.6, 1), (0.9, 1)]],
    ("catch", "rmsprop"): [[(0, 1), (0.2, 1), (0.5, 1)], [(0, 1), (0.3, 1), (NAN, 0)],
                           [(0, 1), (0.1, 1), (0.4, 1)]],
    ("small_dense_short", "adam"): [[(1, 1), (5, 1), (10, 1)], [(2, 1), (6, 1), (11, 1)],
                                    [(3, 1), (7, 1), (12, 1)]],
    ("small_dense_short", "rmsprop"): [[(2, 1), (3, 1), (6, 1)], [(2, 1), (4, 1), (7, 1)],
                                       [(NAN, 0), (NAN, 0), (NAN, 0)]],
}  # fmt: skip


def test_diverged_runs_count_everywhere(tmp_path):
    """A study folder (the runner's own writers) where rmsprop diverges on some seeds: every seed
    enters every number, held from its last finite evaluation, checked by hand."""
    from eval.runner import DONE, atomic_write_json, run_config, run_dir

    path = tmp_path / "div.toml"
    path.write_text(NOISE_STUDY.replace(', "big_dense_short"', ""))
    study = load_study(path, "cpu")
    out = tmp_path / "out"
    atomic_write_json(out / "study.json", study.to_json())
    for (task, name), seeds in DIVERGING.items():
        variant = next(v for v in study.variants if v.name == name)
        for seed, evals in enumerate(seeds):
            run = run_dir(out, task, name, seed)
            run.mkdir(parents=True)
            config = run_config(study, task, variant, seed, "evaluation")
            atomic_write_json(run / "config.json", config)
            rows = [{"env_steps": 400 * (i + 1), "return": r, "score": r, "finite": f}
                    for i, (r, f) in enumerate(evals)]  # fmt: skip
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            if (task, name, seed) != ("small_dense_short", "adam", 2):
                ok = all(f for _, f in evals)
                atomic_write_json(run / DONE, {"status": "finished" if ok else "diverged"})
    text = write_report(out)

    # held curves by hand: catch/rmsprop/1 holds 0.3; small/rmsprop/2 never had a finite
    # evaluation and gets the task's untrained return, the mean of the finite first evaluations
    # of the runs there: adam 1, 2 and rmsprop 2, 2 -> 1.75
    finals = {
        ("catch", "adam"): [1.0, 0.8, 0.9],
        ("catch", "rmsprop"): [0.5, 0.3, 0.4],
        ("small_dense_short", "adam"): [10, 11],
        ("small_dense_short", "rmsprop"): [6, 7, 1.75],
    }
    with open(out / "report" / "summary.csv") as f:
        summary = {(r["task"], r["optimizer"]): r for r in csv.DictReader(f)}
    for key, values in finals.items():  # the final score: the held "score" at the last eval
        assert float(summary[key]["final_mean"]) == pytest.approx(np.mean(values))
        assert int(summary[key]["seeds"]) == len(values)
    assert int(summary["catch", "rmsprop"]["diverged"]) == 1
    with open(out / "report" / "runs.csv") as f:
        runs = {(r["task"], r["optimizer"], r["seed"]): r for r in csv.DictReader(f)}
    assert runs["catch", "rmsprop", "1"]["status"] == "diverged"
    assert float(runs["catch", "rmsprop", "1"]["held_from_step"]) == 1200
    assert runs["small_dense_short", "rmsprop", "2"]["valid_evals"] == "0"
    assert (
        "catch / rmsprop / seed 1 (evaluation): diverged; its evaluation at step 800 (0.3)" in text
    )
    assert "small_dense_short/adam/seed2 is unfinished" in text

    # claims pair by seed, held values included: small_dense_short has adam on seeds 0, 1 only
    with open(out / "report" / "claims.csv") as f:
        claims = {(r["task"], r["a"], r["b"]): r for r in csv.DictReader(f)}
    catch = claims["catch", "adam", "rmsprop"]
    assert int(catch["pairs"]) == 3
    assert float(catch["difference"]) == pytest.approx(np.mean([0.5, 0.5, 0.5]))
    small = claims["small_dense_short", "adam", "rmsprop"]
    assert int(small["pairs"]) == 2 and float(small["difference"]) == pytest.approx(4.0)
    assert "| rmsprop | rmsprop (1) | 3 (1 diverged) |" in text
    assert (out / "report" / "overview.png").stat().st_size > 0


def test_runs_of_variants_no_longer_in_the_study_are_left_out(tmp_path):
    """A study edited between runs (a variant dropped from its sweep) leaves the old variant's
    finished runs in the folder; the report uses study.json's variants only and says so."""
    out = _write_study_results(tmp_path, NOISE_CURVES)
    before = (write_report(out), (out / "report" / "summary.csv").read_text())
    stale = out / "runs" / "catch" / "adam_lr=1.0_" / "seed0"
    shutil.copytree(out / "runs" / "catch" / "adam" / "seed0", stale)
    config = json.loads((stale / "config.json").read_text())
    (stale / "config.json").write_text(json.dumps({**config, "variant": "adam[lr=1.0]"}))
    text = write_report(out)
    assert "excluded: runs/catch/adam_lr=1.0_/seed0 is not in the study as last run" in text
    assert "adam[lr=1.0]" not in (out / "report" / "summary.csv").read_text()
    assert (out / "report" / "summary.csv").read_text() == before[1]


def test_overview_bars_are_the_normalised_scores(hand_study):
    """The overview's bar chart draws task_scores.csv: one bar per (task, family), its height the
    mean normalised score and its error bar the 95% interval."""
    from eval import plots
    from eval.report import group_runs, load_runs
    from eval.report.scores import evaluation_scores, task_scores
    from optim4rl.runtime.stats import compare

    runs, _ = load_runs(hand_study)
    groups, _ = group_runs(runs)
    bars = task_scores(compare(evaluation_scores(groups, 1), "random", "adam"))
    evaluation = [g for g in groups if g.stage == "evaluation"]
    fig = plots.overview_figure(evaluation, bars)
    ax = fig.axes[-1]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == pytest.approx(sorted(b["mean"] for b in bars))
    # hand: on task a, o4rl's normalised mean is (6 - 0.5) / (11 - 0.5)
    assert any(h == pytest.approx(5.5 / 10.5) for h in heights)
    spans = sorted(
        [seg[0][1], seg[1][1]]
        for bar in ax.containers
        if hasattr(bar, "errorbar")
        for seg in bar.errorbar.lines[2][0].get_segments()
    )
    want = sorted([b["ci_low"], b["ci_high"]] for b in bars)
    np.testing.assert_allclose(spans, want)
    assert len(fig.axes) == 1 + 3  # three task panels and the bars
    plots.pyplot().close(fig)
