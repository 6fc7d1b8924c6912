"""`python -m eval analyze context-embedding`: RESeL Fig. 14, the context embedding by gravity.

RESeL is trained briefly on a gravity task of resel.envs (or restored with --run), then its policy
acts deterministically in episodes with a fixed gravity each, for every training and held-out
gravity of the task's fixed set (resel.envs.gravity: 1.5^u, u ~ U(-3, 3), 100 train, 20 held out).
The policy's context-encoder output e_t (ce_out dims) at every step is projected to 2-d with t-SNE
as in the paper (exact, on an evenly drawn subsample of --tsne-points steps) or PCA, and drawn
coloured by the gravity multiplier, held-out gravities marked.

Does the embedding encode gravity? A least-squares fit log g ~ w.e_t + b on the steps (after a
burn-in since the episode start) of the training-gravity episodes, scored by R^2 on the held-out
gravities' episodes, for the trained encoder, for the untrained one (the same network at its
initialisation, fed the same input sequences) and for the current observation alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eval.analyze import cli
from eval.analyze.common import (
    AnalysisError,
    load_resel_run,
    out_dir,
    rollout,
    write_csv,
    write_json,
)
from eval.analyze.projection import pca, tsne
from eval.plots import pyplot, save_figure

SCALES = {
    # the paper: HalfCheetah, 40 gravities x one 1000-step episode, a fully trained policy
    "paper": {
        "env": "HalfCheetah-Gravity",
        "episode_length": 1000,
        "train_steps": 2_000_000,
        "episodes": 1,
        "burn_in": 100,
    },  # fmt: skip
    "cpu": {
        "env": "HalfCheetah-Gravity",
        "episode_length": 200,
        "train_steps": 4_000,
        "episodes": 2,
        "burn_in": 20,
    },  # fmt: skip
}


def linear_r2(x_train, y_train, x_test, y_test, ridge: float = 1e-6) -> float:
    """R^2 on (x_test, y_test) of the least-squares fit y ~ x w + b on the training set (features
    standardised with the training statistics; a tiny ridge keeps constant features harmless)."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-8
    a = np.c_[(x_train - mu) / sd, np.ones(len(x_train))]
    b = np.c_[(x_test - mu) / sd, np.ones(len(x_test))]
    reg = ridge * len(a) * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + reg, a.T @ y_train)
    resid = y_test - b @ w
    return float(1.0 - np.sum(resid**2) / np.sum((y_test - y_test.mean()) ** 2))


def steps_since_start(start: np.ndarray) -> np.ndarray:
    """Age of each step within its episode: 0 where start is 1. start (n, T) -> (n, T) int."""
    age = np.zeros(start.shape, int)
    for t in range(1, start.shape[1]):
        age[:, t] = np.where(start[:, t] > 0, 0, age[:, t - 1] + 1)
    return age


def gravity_params(env_params, scales: np.ndarray, episodes: int):
    """Batched env params, one fixed gravity per episode: (len(scales) * episodes,) entries."""
    per = np.repeat(np.asarray(scales, np.float32), episodes)
    return jax.vmap(lambda g: env_params.replace(gravity_scales=g[None]))(jnp.asarray(per)), per


def train_policy(args, scale: dict, env, env_params, out: Path):
    """Train RESeL (the scale's preset) into out/train and restore it; returns the ReselRun."""
    from resel import config as C
    from resel import train

    cfg = C.preset(args.scale, args.env)
    steps = args.train_steps or scale["train_steps"]
    unit = cfg.policy_every * cfg.env_steps_per_update
    if steps < cfg.warmup_steps + unit:
        raise AnalysisError(f"--train-steps {steps} must exceed the warm-up ({cfg.warmup_steps})")
    every = max((steps - cfg.warmup_steps) // 4 // unit, 1) * unit  # about 4 evaluations
    cfg = dataclasses.replace(cfg, total_steps=steps, eval_every=every, checkpoint_every=steps)
    train.run(cfg, args.env, [args.seed], out / "train", env=(env, env_params))
    return load_resel_run(out / "train", 0, env=(env, env_params))


def collect(run, env, env_params, scale: dict, args) -> dict[str, Any]:
    """Rollouts of every gravity and the embeddings of the trained and the untrained encoder."""
    from resel.envs.gravity import NUM_TRAIN, gravity_scales

    policy = run.trainer.policy
    p_trained = run.state.agent.policy
    fresh = run.trainer.init(jax.random.PRNGKey(run.seed)[None])  # the same init as the training
    p_init = jax.tree.map(lambda x: x[0], fresh.agent.policy)
    scales = gravity_scales(args.gravity_seed)
    episodes = args.episodes or scale["episodes"]
    params_b, per_ep = gravity_params(env_params, scales, episodes)
    steps = int(env.episode_length(env_params))
    keys = jax.random.split(jax.random.PRNGKey(args.seed + 1), len(per_ep))
    seq, alive = rollout(policy, p_trained, env, params_b, keys, steps, params_axis=0)
    embed = jax.jit(lambda p, s: policy.apply(p, s, method=policy.embed))
    held_out = np.repeat(np.arange(len(scales)) >= NUM_TRAIN, episodes)
    return {
        "trained": np.asarray(embed(p_trained, seq)),
        "untrained": np.asarray(embed(p_init, seq)),
        "obs": np.asarray(seq.obs),
        "age": steps_since_start(np.asarray(seq.start)),
        "alive": np.asarray(alive),
        "gravity": per_ep,
        "held_out": held_out,
    }


def scores(data: dict[str, Any], burn_in: int) -> dict[str, Any]:
    """R^2 of log-gravity from each feature set on held-out episodes (steps with age >= burn_in)."""
    n, t = data["age"].shape
    keep = data["age"] >= burn_in
    g = np.log(np.broadcast_to(data["gravity"][:, None], (n, t)))
    test = np.broadcast_to(data["held_out"][:, None], (n, t))
    tr, te = keep & ~test, keep & test
    if tr.sum() < 2 or te.sum() < 2:
        raise AnalysisError(f"too few steps after a burn-in of {burn_in}: lower --burn-in")
    out = {"train_samples": int(tr.sum()), "test_samples": int(te.sum()), "burn_in": burn_in}
    for name in ("trained", "untrained", "obs"):
        x = data[name]
        out[f"r2_{name}"] = linear_r2(x[tr], g[tr], x[te], g[te])
    return out


def project(x: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """x (n, d) -> (2-d points (n, 2), a label with the method's quality measure)."""
    if method == "pca":
        xy, _, ratio = pca(x)
        return xy, f"PCA: PC1 {ratio[0]:.0%}, PC2 {ratio[1]:.0%} of variance"
    xy, kl = tsne(x, seed=seed)
    return xy, f"t-SNE: KL {kl:.2f}"


def plot(
    data: dict[str, Any], burn_in: int, stem: Path, title: str, method: str, points: int, seed: int
) -> tuple[list[Path], dict]:
    """2-d projections of the trained and untrained embeddings (each its own), coloured by
    gravity; t-SNE on at most `points` steps drawn evenly without replacement."""
    import matplotlib.colors as mcolors

    keep = data["age"] >= burn_in
    n, t = keep.shape
    g = np.broadcast_to(data["gravity"][:, None], (n, t))[keep]
    held = np.broadcast_to(data["held_out"][:, None], (n, t))[keep]
    rows = np.arange(len(g))
    if method == "tsne" and len(rows) > points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), points, replace=False))
    g, held = g[rows], held[rows]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    norm = mcolors.LogNorm(vmin=float(data["gravity"].min()), vmax=float(data["gravity"].max()))
    quality = {}
    for ax, name in zip(axes, ("trained", "untrained"), strict=True):
        xy, quality[name] = project(data[name][keep][rows], method, seed)
        ax.scatter(*xy[~held].T, c=g[~held], cmap="coolwarm", norm=norm, s=2, alpha=0.5,
                   linewidths=0, label="training gravities")  # fmt: skip
        sc = ax.scatter(*xy[held].T, c=g[held], cmap="coolwarm", norm=norm, s=7, marker="x",
                        linewidths=0.6, label="held-out gravities")  # fmt: skip
        ax.set_title(f"{name} encoder ({quality[name]}, {len(rows)} steps)", fontsize=9)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.legend(fontsize=7, markerscale=3)
    fig.colorbar(sc, ax=axes, label="gravity multiplier")
    fig.suptitle(title, fontsize=9)
    paths = save_figure(fig, stem, dpi=130)
    plt.close(fig)
    return paths, quality


def parse_args(argv: list[str]) -> argparse.Namespace:
    return cli.context_embedding().parse_args(argv)


def _env(args, scale: dict):
    from resel import envs

    name = args.env or scale["env"]
    if name not in envs.names("gravity"):
        raise AnalysisError(
            f"{name!r} is not a gravity task; choose one of {envs.names('gravity')}"
        )
    length = args.episode_length or scale["episode_length"]
    # training draws from the 100 training gravities; rollouts set every gravity (collect)
    env, params = envs.make(name, split="train", episode_length=length)
    return name, env, params


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    t0 = time.time()
    try:
        if args.run:
            from resel import envs

            meta = Path(args.run) / "config.json"
            trained_on = json.loads(meta.read_text()).get("env") if meta.exists() else None
            if trained_on is not None and trained_on not in envs.names("gravity"):
                raise AnalysisError(f"{args.run} trained on {trained_on}, not a gravity task")
            run = load_resel_run(args.run, 0)
            env, env_params, args.env = run.env, run.env_params, run.env_name
            out = out_dir(args.out, f"runs/analyze/context-embedding-{args.scale}")
        else:
            args.env, env, env_params = _env(args, scale)
            out = out_dir(args.out, f"runs/analyze/context-embedding-{args.scale}")
            run = train_policy(args, scale, env, env_params, out)
        trained_s = time.time() - t0
        data = collect(run, env, env_params, scale, args)
        burn = scale["burn_in"] if args.burn_in is None else args.burn_in
        result = scores(data, burn)
        title = (f"{args.env}: policy context embeddings (step {run.step}, seed {run.seed}), "
                 f"{len(data['gravity'])} episodes x {data['age'].shape[1]} steps, "
                 f"steps >= {burn} after a start")  # fmt: skip
        files, quality = plot(data, burn, out / "context_embedding", title, args.projection,
                              args.tsne_points, args.seed)  # fmt: skip
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = []
    keep = data["age"] >= burn
    for i, (g, h) in enumerate(zip(data["gravity"], data["held_out"], strict=True)):
        e = data["trained"][i][keep[i]]
        rows.append([i, float(g), "test" if h else "train", int(keep[i].sum()),
                     *(e.mean(0).tolist() if len(e) else [])])  # fmt: skip
    width = data["trained"].shape[-1]
    header = ["episode", "gravity", "split", "steps_used"] + [f"e{j}" for j in range(width)]
    files.append(write_csv(out / "episode_embeddings.csv", header, rows))
    summary = {**result, "env": args.env, "run": str(run.folder), "policy_step": run.step,
               "seed": run.seed, "projection": quality,
               "alive_fraction": float(data["alive"].mean()),
               "train_and_collect_seconds": time.time() - t0, "train_seconds": trained_s}  # fmt: skip
    files.append(write_json(out / "summary.json", summary))
    print(f"{args.env}, policy at step {run.step}: held-out R^2 of log gravity from the "
          f"embedding: trained {result['r2_trained']:.3f}, untrained {result['r2_untrained']:.3f}, "
          f"current obs only {result['r2_obs']:.3f} ({result['test_samples']} held-out steps)")  # fmt: skip
    print(f"{args.projection}: trained {quality['trained']}; untrained {quality['untrained']}")
    print(f"wrote {', '.join(str(f) for f in files)} ({time.time() - t0:.0f} s)")
    return 0
