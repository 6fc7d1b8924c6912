"""`python -m meta_train evaluate CHECKPOINT`: fresh A2C agents on each gridworld with the learned
optimizer, the same optimizer at its random initialisation, and tuned Adam; table and curves.

Every method is trained and scored by the one gridworld protocol of meta_train.baselines
(`EvalConfig`: element-wise gradient clip 1 before every optimizer, the checkpoint's per-task
reward scale for every method, the authors' logged return). Score of a run: its final return (the
mean return of the episodes that finished in the last 10% of updates). Per task the
score is normalised between the random policy (the untrained network, lr = 0) and tuned Adam:
    normalised = (R_opt - R_random) / (R_adam - R_random)
and averaged over the tasks where Adam is above random by 2 standard errors (elsewhere the gap
is noise, and so would the normalised score be); the mean over all tasks is reported too. Writes eval.json, eval.md, eval.csv and curves.png/.pdf into --out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import optim4rl
from meta_train.baselines import (
    LR_GRID,
    EvalConfig,
    curve,
    eval_config_from_args,
    final_return,
    sweep_curves,
    train_runs,
)
from meta_train.cli import evaluate_parser
from meta_train.run import META_PARAMS, initial_meta_params
from optim4rl.container import atomic_write_bytes as atomic_write
from optim4rl.runtime.cli import error, interrupted
from optim4rl.runtime.errors import Interrupted, UsageError


def load(checkpoint: str) -> tuple[dict, dict]:
    """Meta-params and header from an optim4rl checkpoint file, a run folder, or a pretrained name."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / META_PARAMS
    if not path.exists() and checkpoint in optim4rl.pretrained_names():
        return optim4rl.pretrained(checkpoint)
    return optim4rl.load_meta_params(path)


def learned_curves(
    task: str, meta_params, kind: str, lrs, ec: EvalConfig, reward_scale: float = 1.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """`train_runs` metrics (len(meta_params), len(lrs), seeds, num_updates) for a stack of
    meta-parameter trees, each at every learning rate."""
    m, n = jax.tree_util.tree_leaves(meta_params)[0].shape[0], len(lrs)
    grid = (
        jax.tree_util.tree_map(lambda a: jnp.repeat(a, n, axis=0), meta_params),
        jnp.tile(jnp.asarray(lrs, jnp.float32), m),
    )

    # the protocol's clip (ec.grad_clip, applied before every optimizer) replaces the learned
    # optimizer's own, so that every method sees the same gradients
    def make(h):
        return optim4rl.learned(h[1], h[0], kind, grad_clip=None)

    runs = train_runs(task, make, grid, ec, reward_scale, seed)
    return {k: v.reshape(m, n, *v.shape[1:]) for k, v in runs.items()}


def _pick(runs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in runs.items()}


def best_of(runs: dict[str, np.ndarray], ec: EvalConfig) -> int:
    """Index of the grid entry (leading axis) with the highest final return averaged over seeds."""
    return int(np.argmax(final_return(runs, ec.final_fraction).mean(-1)))


def evaluate(
    meta_params,
    kind: str,
    lrs,
    ec: EvalConfig,
    adam_lrs: dict,
    reward_scale: dict | None = None,
    progress: bool = True,
    init: Any = None,
) -> dict:
    """{task: {method: curve (points,) mean over seeds, score, per-seed scores, lr}}.

    Every method picks its learning rate per task by the same rule, the best final return on these
    same seeds: the learned optimizer and its random initialisation over `lrs`, Adam over LR_GRID
    (or the lr given for the task in `adam_lrs`). `reward_scale` ({task: c}, default 1) multiplies
    the rewards in the A2C loss of every method, as in meta-training; returns are reported unscaled.
    `init`: the random-initialisation reference (default `init_meta_params(key(0), kind)`).
    """
    reward_scale = reward_scale or {}
    if init is None:
        init = optim4rl.init_meta_params(jax.random.key(0), kind)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), meta_params, init)
    results = {}
    for task in tqdm(ec.tasks, desc="evaluate", disable=not progress):
        scale = float(reward_scale.get(task, 1.0))
        learned = learned_curves(task, stacked, kind, lrs, ec, scale)
        grid = [adam_lrs[task]] if task in adam_lrs else list(LR_GRID)
        hand = sweep_curves(task, "adam", [*grid, 0.0], ec, scale)
        picked = {
            "learned": (_pick(learned, 0), list(lrs)),
            "learned_init": (_pick(learned, 1), list(lrs)),
            "adam": ({k: v[:-1] for k, v in hand.items()}, grid),
        }
        results[task] = {"random": summary(_pick(hand, -1), ec, 0.0)}
        for name, (runs, grid_lrs) in picked.items():
            best = best_of(runs, ec)
            results[task][name] = summary(_pick(runs, best), ec, float(grid_lrs[best]))
        results[task]["reward_scale"] = scale
        results[task]["num_updates"] = ec.updates(task)
    return results


def summary(runs: dict[str, np.ndarray], ec: EvalConfig, lr: float) -> dict:
    """Mean curve, per-seed final returns and their mean, of (seeds, num_updates) metrics."""
    scores = final_return(runs, ec.final_fraction)
    return {
        "curve": curve(runs).mean(0).tolist(),
        "seed_scores": scores.tolist(),
        "score": float(scores.mean()),
        "lr": lr,
    }


def separated(adam: dict, random: dict, z: float = 2.0) -> bool:
    """Whether tuned Adam's final return is clearly above the random policy's:
    mean(A) - mean(R) > z * sqrt(var(A)/n_A + var(R)/n_R), over per-seed scores.

    Where it is not, the normalising gap is noise and a normalised score would be too.
    """
    a, r = np.asarray(adam["seed_scores"]), np.asarray(random["seed_scores"])
    se = np.sqrt(a.var(ddof=1) / a.size + r.var(ddof=1) / r.size) if min(a.size, r.size) > 1 else 0
    return bool(a.mean() - r.mean() > z * se)


def normalised(results: dict) -> dict:
    """Per method, per task (R - R_random) / (R_adam - R_random); the mean over the tasks where
    Adam is clearly above random (`separated`), and the mean over all tasks.

    out[method] = {"per_task", "mean", "mean_all"}; out["noise_tasks"] lists the excluded tasks.
    """
    noise = [t for t, r in results.items() if not separated(r["adam"], r["random"])]
    out: dict = {"noise_tasks": noise}
    for method in ("learned", "learned_init", "adam"):
        per = {}
        for task, r in results.items():
            lo, hi = r["random"]["score"], r["adam"]["score"]
            per[task] = (r[method]["score"] - lo) / (hi - lo) if hi != lo else float("nan")
        kept = [v for t, v in per.items() if t not in noise]
        out[method] = {
            "per_task": per,
            "mean": float(np.mean(kept)) if kept else float("nan"),
            "mean_all": float(np.mean(list(per.values()))),
        }
    return out


def write_report(results: dict, norm: dict, out: Path, header: dict) -> None:
    methods = ("learned", "learned_init", "adam", "random")
    head = ["task", *methods, "learned (norm.)", "learned_init (norm.)", "lr learned/init/adam"]

    def flag(task):  # "*": Adam is not clearly above random here; left out of the first mean
        return " *" if task in norm["noise_tasks"] else ""

    rows = []
    for task, r in results.items():
        rows.append(
            [task]
            + [f"{r[m]['score']:.3f}" for m in methods]
            + [f"{norm['learned']['per_task'][task]:.2f}{flag(task)}"]
            + [f"{norm['learned_init']['per_task'][task]:.2f}{flag(task)}"]
            + ["/".join(f"{r[m]['lr']:g}" for m in methods[:3])]
        )
    for key, label in (("mean", "mean (tasks where Adam > random)"), ("mean_all", "mean (all)")):
        means = [f"{norm[m][key]:.2f}" for m in ("learned", "learned_init")]
        rows.append([label, "", "", "", "", *means, ""])
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    if norm["noise_tasks"]:
        md += [
            "",
            "\\* tuned Adam is not above the random policy by 2 standard errors on this task.",
        ]
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
            y = np.asarray(r[method]["curve"])
            x = np.linspace(0, r["num_updates"], len(y) + 1)[1:]  # window ends
            ax.plot(x, y, label=label)
        ax.set_title(task)
        ax.set_xlabel("A2C update")
        ax.set_ylabel("episode return (finished in window)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"curves.{ext}", dpi=120)
    plt.close(fig)


def own_init(header: dict) -> tuple[Any, str]:
    """The checkpoint's own random initialisation where its provenance says which (a
    `meta_train` run of a seed, not started from --init), else `init_meta_params(key(0))`."""
    prov = header.get("provenance", {})
    if "seed" in prov and prov.get("random_init", True):
        seed = int(prov["seed"])
        assumed = "" if "random_init" in prov else " (assumed: no random_init field, older run)"
        return initial_meta_params(seed, header["kind"]), f"the run's own, seed {seed}{assumed}"
    return None, "init_meta_params(key(0)) (the checkpoint does not record its initialisation)"


def main(argv: list[str]) -> int:
    args = evaluate_parser().parse_args(argv)
    try:
        ec = eval_config_from_args(args)
        meta_params, header = load(args.checkpoint)
    except (ValueError, FileNotFoundError, optim4rl.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    adam_lrs = {}
    if args.baselines:
        tuned = json.loads(Path(args.baselines).read_text())["results"]
        missing = [t for t in ec.tasks if "adam" not in tuned.get(t, {})]
        if missing:
            print(f"error: {args.baselines} has no Adam result for {missing}", file=sys.stderr)
            return 2
        adam_lrs = {task: r["adam"]["lr"] for task, r in tuned.items()}
    elif args.adam_lr:
        adam_lrs = dict.fromkeys(ec.tasks, args.adam_lr)
    base_lr = header.get("hyperparameters", {}).get("learning_rate", 1e-3)
    lrs = args.lr or [base_lr / 3, base_lr, base_lr * 3]
    scale = {}
    if args.reward_scale == "checkpoint":
        scale = header.get("provenance", {}).get("reward_scale", {})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init, init_note = own_init(header)
    try:
        results = evaluate(meta_params, header["kind"], lrs, ec, adam_lrs, scale, init=init)
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    norm = normalised(results)
    info = {
        "checkpoint": args.checkpoint,
        "kind": header["kind"],
        "lrs": lrs,
        "reward_scale": scale,
        "learned_init": init_note,
        "adam_lrs": adam_lrs,
        "eval_config": ec.to_json(),
        "checkpoint_header": header,
    }
    write_report(results, norm, out, info)
    print((out / "eval.md").read_text())
    return 0
