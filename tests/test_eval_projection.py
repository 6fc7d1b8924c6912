"""eval.analyze.projection: PCA against the covariance eigenvectors; t-SNE's perplexity calibration, its hand-written gradient against
finite differences, and that it keeps neighbourhoods PCA loses; the context-embedding figure from it."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from eval.analyze import context_embedding as ce
from eval.analyze import projection


def one_nn_accuracy(y: np.ndarray, labels: np.ndarray) -> float:
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def hidden_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 clusters 10 apart in 4 low-variance dims, plus 2 wide noise dims (sd 10) that hold most
    of the variance, so the top-2 principal components are the noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 100)
    x = np.concatenate(
        [
            10.0 * np.eye(4)[labels] + 0.3 * rng.normal(size=(400, 4)),
            10 * rng.normal(size=(400, 2)),
        ],
        axis=1,
    )
    return x, labels


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)) @ np.diag([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    x = x @ np.linalg.qr(rng.normal(size=(6, 6)))[0] + 7.0
    scores, comps, ratio = projection.pca(x, 2)
    evals, evecs = np.linalg.eigh(np.cov(x.T))
    order = np.argsort(evals)[::-1]
    for k in range(2):
        v = evecs[:, order[k]]
        assert abs(abs(v @ comps[k]) - 1.0) < 1e-8  # same direction up to sign
        np.testing.assert_allclose(np.abs(scores[:, k]), np.abs((x - x.mean(0)) @ v), atol=1e-8)
    np.testing.assert_allclose(ratio, evals[order[:2]] / evals.sum(), rtol=1e-8)
    assert ratio[0] > 0.6  # the first axis holds 25 / (25 + 9 + 1.3) of the variance


def test_each_row_has_the_requested_perplexity():
    x, _ = hidden_clusters()
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    for perplexity in (5.0, 30.0):
        p, beta = projection.conditional_probabilities(d2, perplexity)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
        assert np.all(np.diag(p) == 0) and np.all(beta > 0)
        entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
        np.testing.assert_allclose(np.exp(entropy), perplexity, rtol=1e-6)
    joint = projection.joint_probabilities(x, 30.0)
    np.testing.assert_allclose(joint, joint.T)
    assert abs(joint.sum() - 1.0) < 1e-6


def test_kl_and_gradient_match_the_definition_and_finite_differences():
    rng = np.random.default_rng(1)
    p = projection.joint_probabilities(rng.normal(size=(40, 5)), 8.0)
    y = rng.normal(size=(40, 2))
    off = ~np.eye(40, dtype=bool)

    def kl_by_definition(y):  # float64, straight from KL(P || Q) with the Student-t Q
        w = 1 / (1 + ((y[:, None] - y[None]) ** 2).sum(-1))
        q = w[off] / w[off].sum()
        return np.sum(p[off] * np.log(p[off] / q))

    kl, grad = projection.kl_and_gradient(jnp.asarray(p, jnp.float32), jnp.asarray(y, jnp.float32))
    assert float(kl) == pytest.approx(kl_by_definition(y), rel=1e-4)
    eps, fd = 1e-6, np.zeros_like(y)
    for i, j in np.ndindex(*y.shape):
        d = np.zeros_like(y)
        d[i, j] = eps
        fd[i, j] = (kl_by_definition(y + d) - kl_by_definition(y - d)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-3, atol=1e-4 * np.abs(fd).max())


def test_tsne_keeps_the_clusters_pca_mixes():
    x, labels = hidden_clusters()
    y, kl = projection.tsne(x, perplexity=20.0, steps=500)
    xy, _, ratio = projection.pca(x)
    assert ratio.sum() > 0.6  # the noise dims dominate the variance ...
    assert one_nn_accuracy(xy, labels) < 0.6  # ... so PCA's plane mixes the clusters
    assert one_nn_accuracy(y, labels) > 0.98
    # a random 2-d layout has a much larger KL than the optimised one
    p = jnp.asarray(projection.joint_probabilities(x, 20.0), jnp.float32)
    y_random = jnp.asarray(np.random.default_rng(0).normal(size=y.shape), jnp.float32)
    random_kl, _ = projection.kl_and_gradient(p, y_random)
    assert kl < 0.5 * float(random_kl)


def test_context_embedding_figure_with_tsne(tmp_path):
    rng = np.random.default_rng(2)
    n, t, d = 6, 30, 8
    gravity = 1.5 ** rng.uniform(-3, 3, n)
    data = {
        "age": np.tile(np.arange(t), (n, 1)),
        "gravity": gravity,
        "held_out": np.arange(n) >= 4,
        "trained": np.log(gravity)[:, None, None] + 0.1 * rng.normal(size=(n, t, d)),
        "untrained": rng.normal(size=(n, t, d)),
    }
    files, quality = ce.plot(data, 5, tmp_path / "fig", "title", "tsne", points=100, seed=0)
    assert all(f.stat().st_size > 0 for f in files) and {f.suffix for f in files} == {
        ".png",
        ".pdf",
    }
    assert all(np.isfinite(float(q.split("t-SNE: KL ")[1])) for q in quality.values())
    _, quality = ce.plot(data, 5, tmp_path / "pca", "title", "pca", points=100, seed=0)
    assert "of variance" in quality["untrained"]
