"""eval.stats against direct computations (scipy's trim_mean, hand sums, analytic intervals)."""

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
    from optim4rl.runtime.stats import mean_ci

    curves = np.stack([np.zeros(400), np.ones(400)], axis=1)  # eval 0 constant, eval 1 constant
    curves[:, 1] += np.random.default_rng(0).normal(0, 1, 400)
    mean, low, high = mean_ci(curves, reps=2000)
    assert low[0] == high[0] == 0.0 and mean[1] == pytest.approx(curves[:, 1].mean())
    assert high[1] - low[1] == pytest.approx(2 * 1.96 * curves[:, 1].std() / 20, rel=0.1)
