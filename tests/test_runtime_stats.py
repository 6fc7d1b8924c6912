"""optim4rl.runtime.stats against direct computations (scipy's trim_mean and t intervals, hand
sums, analytic intervals) and simulations of coverage and of studies where nothing learns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from optim4rl.runtime.stats import (
    area_under_curve,
    final_return,
    iqm,
    mean_se,
    normalize,
    stratified_bootstrap_ci,
)


def test_final_and_auc_by_hand():
    steps = np.array([0.0, 10.0, 30.0])
    curves = np.array([[0.0, 10.0, 20.0], [4.0, 4.0, 4.0]])
    np.testing.assert_allclose(final_return(curves), [20.0, 4.0])
    np.testing.assert_allclose(final_return(curves, last=2), [15.0, 4.0])
    # run 0: (10 * (0 + 10) / 2 + 20 * (10 + 20) / 2) / 30 = (50 + 300) / 30
    np.testing.assert_allclose(area_under_curve(steps, curves), [350 / 30, 4.0])
    with pytest.raises(ValueError, match="last=4"):
        final_return(curves, last=4)


def test_mean_se():
    mean, se = mean_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0
    assert se == pytest.approx(np.sqrt(((4 + 1 + 0 + 9) / 3) / 4))


@pytest.mark.parametrize("n", [1, 4, 7, 10, 33])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).standard_cauchy(n)
    assert iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))


def test_bootstrap_degenerate_when_every_task_is_constant():
    scores = np.tile([1.0, 5.0, 9.0], (6, 1))  # 6 runs x 3 tasks, constant within each task
    point, low, high = stratified_bootstrap_ci(scores, "iqm", reps=200)
    assert point == low == high == pytest.approx(iqm(scores))


def test_bootstrap_mean_interval_matches_normal_theory():
    """For many runs the percentile interval of the mean is about mean +- 1.96 se."""
    rng = np.random.default_rng(1)
    scores = rng.normal(3.0, 2.0, size=(400, 1))
    point, low, high = stratified_bootstrap_ci(scores, "mean", reps=4000, seed=2)
    se = scores.std(ddof=1) / np.sqrt(scores.size)
    assert point == pytest.approx(scores.mean())
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert low < scores.mean() < high


def test_bootstrap_is_stratified():
    """Task 0 always 0, task 1 always 1: the mean of any stratified replicate is exactly 0.5, while
    resampling runs across tasks would vary it."""
    scores = np.stack([np.zeros(5), np.ones(5)], axis=1)
    _, low, high = stratified_bootstrap_ci(scores, "mean", reps=500)
    assert low == high == 0.5
    _, low, high = stratified_bootstrap_ci(scores, lambda r: np.median(r), reps=50)
    assert low == high == 0.5


def test_normalize():
    np.testing.assert_allclose(normalize([[5.0, 30.0]], [0.0, 10.0], [10.0, 50.0]), [[0.5, 0.5]])
    with pytest.raises(ValueError, match="must differ"):
        normalize([1.0], 2.0, 2.0)


def test_bootstrap_ragged_strata_keep_their_sizes():
    """Tasks with 2 and 4 runs, constant within each: every replicate keeps 2 zeros and 4 ones, so
    its mean is exactly 4/6; a varying task still varies."""
    from optim4rl.runtime.stats import stratified_bootstrap_ci

    point, low, high = stratified_bootstrap_ci([np.zeros(2), np.ones(4)], "mean", reps=300)
    assert point == low == high == pytest.approx(4 / 6)
    point, low, high = stratified_bootstrap_ci([np.zeros(2), np.arange(4.0)], "iqm", reps=300)
    assert point == pytest.approx(scipy_stats.trim_mean([0, 0, 0, 1, 2, 3], 0.25)) and low < high


def test_mean_ci_per_evaluation():
    from scipy import stats as scipy_stats

    from optim4rl.runtime.stats import mean_ci

    curves = np.stack([np.zeros(5), np.arange(5.0)], axis=1)  # eval 0 constant
    mean, low, high = mean_ci(curves)
    assert low[0] == high[0] == 0.0 and mean[1] == 2.0
    expected = scipy_stats.t.interval(0.95, 4, 2.0, scipy_stats.sem(np.arange(5.0)))
    np.testing.assert_allclose([low[1], high[1]], expected)


def test_t_interval_and_paired_difference_match_scipy():
    from scipy import stats as scipy_stats

    from optim4rl.runtime.stats import paired_difference, t_interval

    rng = np.random.default_rng(3)
    a, b = rng.normal(1, 2, 7), rng.normal(0, 2, 7)
    ci = t_interval(a, 0.9)
    assert (ci.low, ci.high) == pytest.approx(
        scipy_stats.t.interval(0.9, 6, a.mean(), scipy_stats.sem(a))
    )
    d = paired_difference(a, b, 0.99)
    ref = scipy_stats.ttest_rel(a, b).confidence_interval(0.99)
    assert (d.estimate, d.low, d.high, d.n) == pytest.approx((np.mean(a - b), ref.low, ref.high, 7))
    single = t_interval([4.0])
    assert single.estimate == 4.0 and np.isnan(single.low) and not single.excludes_zero
    with pytest.raises(ValueError, match="differ in size"):
        paired_difference(a, b[:3])


def test_probability_of_improvement_is_rlibles_formula():
    """P(X > Y) = mean over tasks of (1/(N M)) sum_i sum_j [x_i > y_j] + 1/2 [x_i = y_j]."""
    from optim4rl.runtime.stats import probability_of_improvement

    x = [np.array([1.0, 3.0, 3.0]), np.array([0.0, 5.0])]
    y = [np.array([2.0, 3.0]), np.array([1.0, 1.0, 6.0])]
    # task 0: 1 beats none of (2, 3); each 3 beats 2 and ties 3 -> (0 + 1.5 + 1.5) / 6 = 0.5
    # task 1: 0 beats none; 5 beats 1, 1, not 6 -> 2 / 6
    assert probability_of_improvement(x, y) == pytest.approx((0.5 + 2 / 6) / 2)
    assert probability_of_improvement([np.ones(3)], [np.ones(4)]) == 0.5


@pytest.mark.parametrize("n", [3, 4, 8])
def test_t_intervals_cover_at_small_seed_counts(n):
    """Student-t: 95% of intervals contain the mean of normal data at any n (2000 simulated
    samples: within 1.5 points, 3 binomial standard errors); under right-skewed data it stays
    within 4 points. The percentile-bootstrap IQM interval undercovers below 8 seeds (74% at 3,
    87% at 4: the review's numbers), which is why reports omit it there."""
    from optim4rl.runtime.stats import bootstrap_iqm_covers, coverage

    assert abs(coverage("t", n) - 0.95) <= 0.015
    assert coverage("t", n, "lognormal") >= 0.91
    boot = coverage("bootstrap_iqm", n)
    if n == 3:
        assert 0.70 <= boot <= 0.78 and not bootstrap_iqm_covers(n)
    elif n == 4:
        assert 0.84 <= boot <= 0.90 and not bootstrap_iqm_covers(n)
    else:
        assert boot >= 0.93 and bootstrap_iqm_covers(n)
    with pytest.raises(ValueError, match="unknown interval method"):
        coverage("bca", n)


def _null_study(rng, families=5, candidates=6, tuning=4, seeds=8, tasks=2):
    """A study where nothing learns: every candidate of every family scores N(0, 1) on every
    seed, as does the floor. Selection on the tuning seeds, scores on fresh seeds."""
    from optim4rl.runtime.stats import select

    scores = {}
    for t in range(tasks):
        fams = {}
        for f in range(families):
            cands = {c: rng.normal(0, 1, tuning) for c in range(candidates)}
            select(cands)  # chosen on the tuning seeds; fresh seeds are independent of the choice
            fams[f"f{f}"] = dict(enumerate(rng.normal(0, 1, seeds)))
        fams["random"] = dict(enumerate(rng.normal(0, 1, seeds)))
        scores[f"t{t}"] = fams
    return scores


def test_a_study_where_nothing_learns_has_no_winner():
    """Family-wise: over 300 simulated null studies (5 families x 6 candidates x 4 tuning seeds,
    8 evaluation seeds, 2 tasks), any false claim at all (a winner, a family above the floor, a
    normalised task) happens in at most 5% + 2 binomial s.e. of them; the old best-of-variants
    guard kept 52% of such tasks."""
    from optim4rl.runtime.stats import compare

    rng = np.random.default_rng(0)
    false = 0
    for _ in range(300):
        c = compare(_null_study(rng), "random", "f0")
        separated = [x for x in c.claims if x.verdict != "not separated"]
        false += bool(separated or any(c.winners.values()) or c.normalised)
    assert false / 300 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 300)


def test_compare_finds_a_real_difference_and_normalises():
    from optim4rl.runtime.stats import compare

    rng = np.random.default_rng(1)
    scores = {
        t: {
            "adam": dict(enumerate(rng.normal(10, 1, 10))),
            "o4rl": dict(enumerate(rng.normal(5, 1, 10))),
            "random": dict(enumerate(rng.normal(0, 1, 10))),
        }
        for t in ("a", "b")
    }
    c = compare(scores, "random", "adam")
    assert c.winners == {"a": "adam", "b": "adam"} and set(c.normalised) == {"a", "b"}
    for t in ("a", "b"):
        adam = np.array(list(c.normalised[t]["adam"].values()))
        assert adam.mean() == pytest.approx(1.0)
        assert np.mean(list(c.normalised[t]["random"].values())) == pytest.approx(0.0)
    overall = [x for x in c.claims if x.task == "all tasks (normalised)"]
    assert [(x.a, x.b, x.verdict) for x in overall] == [("o4rl", "adam", "o4rl < adam")]
    assert overall[0].difference.n == 20


def test_report_numbers_print_as_written_by_hand():
    """optim4rl.runtime.numbers, the one way every report prints a number."""
    from optim4rl.runtime.numbers import NONE, bracket, g3, pm, seed_list

    assert NONE == "—"
    assert [g3(x) for x in (0.5, 0.012345, 12345.0, 3e-3, 0, -0.0, np.float32(0.25))] == [
        "0.5", "0.0123", "1.23e+04", "0.003", "0", "0", "0.25",
    ]  # fmt: skip
    assert g3(-3.469446951953614e-18) == "0"  # a floor's own normalised mean: rounding residue
    assert [g3(x) for x in (None, float("nan"), float("inf"), -np.inf)] == [NONE] * 4
    assert pm(0.97345, 0.023086) == "0.973 ± 0.0231"
    assert pm(0.5, float("nan")) == pm(0.5, None) == "0.5"
    assert bracket(-0.0798, 0.068) == "[-0.0798, 0.068]"
    assert bracket(0.1, float("nan")) == bracket(None, 1.0) == NONE
    assert seed_list(range(8)) == "0..7" and seed_list([1003, 1000, 1001, 1002]) == "1000..1003"
    assert seed_list([3, 5]) == "3, 5" and seed_list([0, 1]) == "0, 1" and seed_list([]) == ""
    assert seed_list([0, 1, 2, 3, 5, 7, 8]) == "0..3, 5, 7, 8"


def test_compare_adds_the_declared_claims_to_the_count():
    from optim4rl.runtime.stats import compare

    rng = np.random.default_rng(2)
    fams = {f: dict(enumerate(rng.normal(m, 1, 6))) for f, m in
            (("adam", 5), ("o4rl", 4), ("init", 0), ("random", 0))}  # fmt: skip
    plain = compare({"t": fams}, "random", "adam")
    declared = compare({"t": fams}, "random", "adam", extra=[("o4rl", "init")])
    pairs = {(c.a, c.b) for c in declared.claims}
    assert ("o4rl", "init") in pairs and ("o4rl", "init") not in {(c.a, c.b) for c in plain.claims}
    assert len(declared.claims) == len(plain.claims) + 1
    assert declared.level == pytest.approx(1 - 0.05 / len(declared.claims))
    claim = next(c for c in declared.claims if (c.a, c.b) == ("o4rl", "init"))
    diff = np.array(list(fams["o4rl"].values())) - np.array(list(fams["init"].values()))
    assert claim.difference.estimate == pytest.approx(diff.mean())
