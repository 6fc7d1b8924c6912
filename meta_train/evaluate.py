"""`python -m meta_train evaluate CHECKPOINT`: fresh A2C agents on each gridworld with the learned
optimizer, the same optimizer at its random initialisation, and tuned Adam; table and curves.

Score of a run: its final return (mean episode return over the last 10% of updates). Per task the
score is normalised between the random policy (the untrained network, lr = 0) and tuned Adam:
    normalised = (R_opt - R_random) / (R_adam - R_random)
and averaged over tasks. Writes eval.json, eval.md, eval.csv and curves.png/.pdf into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import optim4rl
from meta_train.a2c import A2CConfig, make_train_fn
from meta_train.baselines import (
    LR_GRID,
    EvalConfig,
    add_eval_options,
    eval_config_from_args,
    final_return,
    hand_optimizer,
)
from meta_train.run import META_PARAMS, atomic_write


def load(checkpoint: str) -> tuple[dict, dict]:
    """Meta-params and header from an optim4rl checkpoint file, a run folder, or a pretrained name."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / META_PARAMS
    if not path.exists() and checkpoint in optim4rl.pretrained_names():
        return optim4rl.pretrained(checkpoint)
    return optim4rl.load_meta_params(path)


def learned_curves(task, meta_params, kind, lr, ec: EvalConfig, seed=0) -> np.ndarray:
    """(len(meta_params), seeds, num_updates) for a stack of meta-parameter trees."""
    config = A2CConfig(task=task, num_updates=ec.num_updates)
    train = make_train_fn(config, lambda mp: optim4rl.learned(lr, mp, kind))
    run = jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0))
    keys = jax.random.split(jax.random.key(seed), ec.seeds)
    _, metrics = jax.jit(run)(keys, meta_params)
    return np.asarray(metrics["episode_return"])


def adam_curves(task, lrs, ec: EvalConfig, seed=0) -> np.ndarray:
    """(len(lrs), seeds, num_updates); lr 0 leaves the network at its initialisation."""
    config = A2CConfig(task=task, num_updates=ec.num_updates)
    train = make_train_fn(config, lambda lr: hand_optimizer("adam", lr))
    run = jax.vmap(jax.vmap(train, in_axes=(0, None)), in_axes=(None, 0))
    keys = jax.random.split(jax.random.key(seed), ec.seeds)
    _, metrics = jax.jit(run)(keys, jnp.asarray(lrs, jnp.float32))
    return np.asarray(metrics["episode_return"])


def evaluate(
    meta_params, kind: str, lr: float, ec: EvalConfig, adam_lrs: dict, progress: bool = True
) -> dict:
    """{task: {method: curve (num_updates,) mean over seeds, score, per-seed scores}}.

    Adam's lr per task comes from `adam_lrs`, or, for tasks not in it, is the best of LR_GRID on
    these same seeds (which favours Adam, the opponent).
    """
    init = optim4rl.init_meta_params(jax.random.key(0), kind)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), meta_params, init)
    results, tuned_lrs = {}, {}
    for task in tqdm(ec.tasks, desc="evaluate", disable=not progress):
        learned = learned_curves(task, stacked, kind, lr, ec)
        # tuned lr from a baselines file, or tuned here over the grid on these seeds
        grid = [adam_lrs[task]] if task in adam_lrs else list(LR_GRID)
        hand = adam_curves(task, [*grid, 0.0], ec)
        best = int(np.argmax(final_return(hand[:-1], ec.final_fraction).mean(-1)))
        tuned_lrs[task] = grid[best]
        curves = {
            "learned": learned[0],
            "learned_init": learned[1],
            "adam": hand[best],
            "random": hand[-1],
        }
        results[task] = {
            name: {
                "curve": c.mean(0).tolist(),
                "seed_scores": final_return(c, ec.final_fraction).tolist(),
                "score": float(final_return(c, ec.final_fraction).mean()),
            }
            for name, c in curves.items()
        }
        results[task]["adam"]["lr"] = tuned_lrs[task]
    return results


def normalised(results: dict) -> dict:
    """Per method, per task (R - R_random) / (R_adam - R_random), and the mean over tasks."""
    out = {}
    for method in ("learned", "learned_init", "adam"):
        per = {}
        for task, r in results.items():
            lo, hi = r["random"]["score"], r["adam"]["score"]
            per[task] = (r[method]["score"] - lo) / (hi - lo) if hi != lo else float("nan")
        out[method] = {"per_task": per, "mean": float(np.mean(list(per.values())))}
    return out


def write_report(results: dict, norm: dict, out: Path, header: dict) -> None:
    methods = ("learned", "learned_init", "adam", "random")
    head = ["task", *methods, "learned (norm.)", "learned_init (norm.)"]
    rows = []
    for task, r in results.items():
        rows.append(
            [task]
            + [f"{r[m]['score']:.3f}" for m in methods]
            + [f"{norm['learned']['per_task'][task]:.2f}"]
            + [f"{norm['learned_init']['per_task'][task]:.2f}"]
        )
    rows.append(
        ["mean (normalised)", "", "", "", "", f"{norm['learned']['mean']:.2f}"]
        + [f"{norm['learned_init']['mean']:.2f}"]
    )
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    atomic_write(out / "eval.md", ("\n".join(md) + "\n").encode())
    atomic_write(out / "eval.csv", ("\n".join(",".join(x) for x in [head, *rows]) + "\n").encode())
    payload = {"header": header, "results": results, "normalised": norm}
    atomic_write(out / "eval.json", json.dumps(payload).encode())
    plot_curves(results, out)


def plot_curves(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    labels = {
        "learned": "Optim4RL (meta-trained)",
        "learned_init": "Optim4RL (random init)",
        "adam": "Adam (tuned)",
        "random": "untrained network",
    }
    for ax, (task, r) in zip(axes.flat, results.items(), strict=False):
        for method, label in labels.items():
            curve = np.asarray(r[method]["curve"])
            width = max(1, len(curve) // 50)
            smooth = np.convolve(curve, np.ones(width) / width, mode="valid")
            ax.plot(np.arange(len(smooth)) + width - 1, smooth, label=label)
        ax.set_title(task)
        ax.set_xlabel("A2C update")
        ax.set_ylabel("episode return")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"curves.{ext}", dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m meta_train evaluate")
    p.add_argument("checkpoint", help="meta_params.msgpack, a run folder, or a pretrained name")
    add_eval_options(p)
    p.add_argument("--lr", type=float, help="learning rate of the learned optimizer")
    p.add_argument("--baselines", help="baselines.json from `python -m meta_train baselines`")
    p.add_argument("--adam-lr", type=float, help="Adam lr on every task (default: tuned here)")
    p.add_argument("--out", default="runs/evaluate")
    args = p.parse_args(argv)
    try:
        ec = eval_config_from_args(args)
        meta_params, header = load(args.checkpoint)
    except (ValueError, FileNotFoundError, optim4rl.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    adam_lrs = {}
    if args.baselines:
        tuned = json.loads(Path(args.baselines).read_text())["results"]
        adam_lrs = {task: r["adam"]["lr"] for task, r in tuned.items()}
    elif args.adam_lr:
        adam_lrs = dict.fromkeys(ec.tasks, args.adam_lr)
    lr = args.lr or header.get("hyperparameters", {}).get("learning_rate", 1e-3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = evaluate(meta_params, header["kind"], lr, ec, adam_lrs)
    norm = normalised(results)
    info = {
        "checkpoint": args.checkpoint,
        "kind": header["kind"],
        "lr": lr,
        "adam_lrs": adam_lrs,
        "eval_config": {**ec.__dict__, "tasks": list(ec.tasks)},
        "checkpoint_header": header,
    }
    write_report(results, norm, out, info)
    print((out / "eval.md").read_text())
    return 0
