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

[optimizers.sgd]                  # diverges after about 30 updates on every seed
spec = "sgd(learning_rate=30.0)"
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
    assert counts == {"ran": 4, "skipped": 0, "diverged": 2}
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
    assert run_study(load_study(path, "cpu"), out)["skipped"] == 4
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
        rows = {r["optimizer"]: r for r in csv.DictReader(f)}
    row = rows["adam"]
    assert float(row["final_mean"]) == pytest.approx(np.mean(finals))
    assert float(row["final_se"]) == pytest.approx(np.std(finals, ddof=1) / np.sqrt(2))
    assert "### catch" in text and "| adam | 2 |" in text
    # sgd diverged on both seeds: each counts with its last finite window held to the end
    held = []
    for seed in (0, 1):
        lines = (out / "runs/catch/sgd" / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()
        rows_ = [json.loads(line) for line in lines]
        valid = [r["return"] for r in rows_[: [r["finite"] for r in rows_].index(0.0)]]
        assert len(valid) < 4  # the A2C adapter flags the windows from the divergence on
        curve = valid + [valid[-1] if valid else np.nan] * (4 - len(valid))
        held.append(np.mean(curve[-2:]))
    assert np.all(np.isfinite(held)), "sgd lr 30 should diverge after the first window"
    assert int(rows["sgd"]["seeds"]) == 2 and int(rows["sgd"]["diverged"]) == 2
    assert float(rows["sgd"]["final_mean"]) == pytest.approx(np.mean(held))
    assert "| sgd | 2 (2 diverged) |" in text
    for name in ("curves.png", "curves.pdf", "report.md", "runs.csv"):
        assert (out / "report" / name).stat().st_size > 0


def _fake_run(out, task, variant, seed, returns, sweep=None, status="finished", success=None):
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
    for row, rate in zip(rows, success or [], strict=False):
        row["success"] = rate
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
    b = rows["b", "sgd[lr=1.0]"]  # first evaluations 100, 100: the untrained return beside final
    assert float(b["first_mean"]) == 100 and float(b["first_se"]) == 0
    assert "| sgd[lr=1.0] | 2 | 200 | 100.0 ± 0.0 | 300.0 ± 0.0 |" in text
    with open(out / "report" / "tuned.csv") as f:
        best = {r["task"]: r for r in csv.DictReader(f)}
    # family sgd: on a, lr=0.1 (final 30) beats lr=1.0 (10); on b, lr=1.0 (300) beats 0.1 (100)
    assert best["a"]["variant"] == "sgd[lr=0.1]" and float(best["a"]["final_mean"]) == 30
    assert best["b"]["variant"] == "sgd[lr=1.0]" and float(best["b"]["final_se"]) == 0
    assert "| a | 30 ± 10 (sgd[lr=0.1]; 2) |" in text
    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    # task a: low 0, high 30; task b: low 100, high 300 (sgd[lr=1.0] final mean)
    # sgd[lr=0.1] scores: a -> 20/30, 40/30; b -> 0, 0; mean = (2/3 + 4/3) / 4 = 0.5
    assert float(agg["sgd[lr=0.1]"]["mean"]) == pytest.approx(0.5)
    # sgd[lr=1.0]: a -> 1/3, 1/3; b -> 1, 1; mean 2/3
    assert float(agg["sgd[lr=1.0]"]["mean"]) == pytest.approx(2 / 3)
    assert "seed2 is unfinished" in text
    assert (out / "report" / "sensitivity.png").exists()
    assert (out / "report" / "sensitivity.pdf").exists()


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
                atomic_write_json(run / "config.json", run_config(study, task, variant, seed))
                rows = [
                    {"env_steps": 400 * (i + 1), "return": float(r)}
                    for i, r in enumerate(curves[task, variant.name][seed])
                ]
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                atomic_write_json(run / DONE, {"status": "finished", "cell_seconds": 0.0})
    return out


def test_noise_guard_excludes_task_whose_gap_is_noise(tmp_path):
    from scipy.stats import trim_mean

    out = _write_study_results(tmp_path, NOISE_CURVES)
    text = write_report(out)
    with open(out / "report" / "normalisation.csv") as f:
        refs = {r["task"]: r for r in csv.DictReader(f)}
    assert refs["big_dense_short"]["used"] == "False"
    assert refs["catch"]["used"] == refs["small_dense_short"]["used"] == "True"
    # big_dense_short by hand: low 0 (var 25 and 1 over 3 seeds: SE sqrt(25/3 + 1/3) / 2),
    # high 1 (SE 5 / sqrt 3)
    se = np.hypot(np.sqrt(25 / 3 + 1 / 3) / 2, 5 / np.sqrt(3))
    assert float(refs["big_dense_short"]["gap"]) == pytest.approx(1.0)
    assert float(refs["big_dense_short"]["gap_se"]) == pytest.approx(se)
    assert "**no: gap within noise" in text and "Left out: big_dense_short" in text

    def scores(optimizer, tasks):
        cols = []
        for t in tasks:
            c = {o: np.array(NOISE_CURVES[t, o], float) for o in ("adam", "rmsprop")}
            low = np.mean([c[o][:, 0].mean() for o in c])
            high = max(c[o][:, -1].mean() for o in c)
            cols.append((c[optimizer][:, -1] - low) / (high - low))
        return np.stack(cols, axis=1)

    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    kept = ["catch", "small_dense_short"]
    for o in ("adam", "rmsprop"):
        s = scores(o, kept)
        assert int(agg[o]["tasks"]) == 2
        assert float(agg[o]["mean"]) == pytest.approx(s.mean())
        assert float(agg[o]["iqm"]) == pytest.approx(trim_mean(s.ravel(), 0.25))
    # without the guard big_dense_short's scores would be huge (adam's seed finals -4 and 6 on a
    # gap of 1) and would move rmsprop's mean: the exclusion is visible in the numbers
    noisy = scores("adam", ["big_dense_short"])
    assert np.abs(noisy).max() == pytest.approx(6.0)
    with_noise = scores("rmsprop", [*kept, "big_dense_short"]).mean()
    assert abs(with_noise - float(agg["rmsprop"]["mean"])) > 0.05  # 0.481 vs 0.556


def test_noise_guard_threshold_and_single_seed(tmp_path):
    from eval.report import NOISE_SE, Group, normalisation_refs

    def group(task, variant, curves):
        curves = np.array(curves, float)
        steps = np.arange(1.0, curves.shape[1] + 1)
        return Group(task, variant, variant, {}, list(range(len(curves))), steps, curves)

    # untrained returns all 0 (SE 0); x's finals shift + (-1, 0, 1) (SE 1 / sqrt 3) are the best;
    # y ends far below. So gap = shift, and the task is used iff shift > NOISE_SE / sqrt 3.
    worse = group("t", "y", [[0, -50]] * 3)
    for factor, used in ((1.01, True), (0.99, False)):
        shift = factor * NOISE_SE / np.sqrt(3)
        x = group("t", "x", [[0, shift - 1], [0, shift], [0, shift + 1]])
        (ref,) = normalisation_refs([x, worse], 1)
        assert ref["used"] is used and ref["gap"] == pytest.approx(shift)
    (ref,) = normalisation_refs([group("t", "x", [[0, 3]]), group("t", "y", [[1, 2]])], 1)
    assert ref["used"] and "1 seed" in ref["reason"] and ref["gap"] == pytest.approx(2.5)


def _group(task, variant, curves, sweep=None):
    from eval.report import Group

    curves = np.asarray(curves, float)
    steps = 100.0 * np.arange(curves.shape[1])
    family = variant.split("[")[0]
    return Group(task, variant, family, sweep or {}, list(range(len(curves))), steps, curves)


def test_plots_draw_the_hand_computed_numbers(tmp_path):
    import matplotlib.image

    from eval import plots

    # mean 1, 2, 3; with two seeds the 95% bootstrap band spans the two curves themselves
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
    assert band.min() == pytest.approx(0.0) and band.max() == pytest.approx(4.0)
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
            atomic_write_json(run / "config.json", run_config(study, task, variant, seed))
            rows = [{"env_steps": 400 * (i + 1), "return": r, "finite": f} for i, (r, f) in
                    enumerate(evals)]  # fmt: skip
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
    firsts = {("small_dense_short", "adam"): [1, 2], ("small_dense_short", "rmsprop"): [2, 2, 1.75]}
    with open(out / "report" / "summary.csv") as f:
        summary = {(r["task"], r["optimizer"]): r for r in csv.DictReader(f)}
    for key, values in finals.items():
        assert float(summary[key]["final_mean"]) == pytest.approx(np.mean(values))
        assert int(summary[key]["seeds"]) == len(values)
    assert int(summary["catch", "rmsprop"]["diverged"]) == 1
    assert "| rmsprop | 3 (1 diverged) |" in text
    with open(out / "report" / "runs.csv") as f:
        runs = {(r["task"], r["optimizer"], r["seed"]): r for r in csv.DictReader(f)}
    assert runs["catch", "rmsprop", "1"]["status"] == "diverged"
    assert float(runs["catch", "rmsprop", "1"]["held_from_step"]) == 1200
    assert runs["small_dense_short", "rmsprop", "2"]["valid_evals"] == "0"
    assert "catch / rmsprop / seed 1: diverged; its evaluation at step 800 (0.3)" in text
    assert "small_dense_short/adam/seed2 is unfinished" in text

    # normalisation: catch low 0, high adam's 0.9; small low = mean of the optimizers' mean first
    # evaluations, high adam's 10.5
    low = {"catch": 0.0, "small_dense_short": np.mean([np.mean(v) for v in firsts.values()])}
    high = {"catch": 0.9, "small_dense_short": 10.5}
    with open(out / "report" / "aggregate.csv") as f:
        agg = {r["optimizer"]: r for r in csv.DictReader(f)}
    for name, n_seeds, n_div in (("adam", 5, 0), ("rmsprop", 6, 2)):
        pooled = np.concatenate(
            [(np.array(finals[t, name]) - low[t]) / (high[t] - low[t]) for t in low]
        )
        assert float(agg[name]["mean"]) == pytest.approx(pooled.mean())
        assert int(agg[name]["seeds"]) == n_seeds and int(agg[name]["diverged"]) == n_div
    assert "| rmsprop | 2 | 6 (2 diverged) |" in text
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
