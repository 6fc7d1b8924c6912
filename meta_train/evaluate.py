"""`python -m meta_train evaluate CHECKPOINT`: fresh A2C agents on each gridworld with the learned
optimizer, the same optimizer at its random initialisation, tuned Adam and the random policy.

The protocol is meta_train.protocol's (`compare_families`): every run on the one run driver; each
swept family (learned, learned_init and adam, over the same lr grid `--lr`) chooses its lr per task
on the tuning seeds, and only the chosen variants, with the random policy, are reported, on the
evaluation seeds. The learned optimizer and its random initialisation get the per-task reward
scale the checkpoint was meta-trained with; Adam and the random policy (the untrained network, lr
0) are unscaled, as the authors train their baselines. Claims, winners and the normalised scores
(random = 0, tuned Adam = 1, where Adam is separated above random) come from
`optim4rl.runtime.stats.compare`. Writes eval.json, eval.md, eval.csv and curves.png/.pdf into
--out.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

import optim4rl
from meta_train.cli import evaluate_parser
from meta_train.protocol import (
    FLOOR,
    LR_GRID,
    REFERENCE,
    SCORE_RULE,
    SELECTION_RULE,
    EvalConfig,
    Family,
    _unique,
    compare_families,
    eval_config_from_args,
    hand_family,
    protocol_lines,
    random_family,
)
from meta_train.report import write_outputs
from meta_train.run import META_PARAMS, initial_meta_params
from optim4rl.container import atomic_write_bytes as atomic_write
from optim4rl.runtime import stats
from optim4rl.runtime.cli import error, interrupted
from optim4rl.runtime.errors import Interrupted, UsageError
from optim4rl.runtime.numbers import g3, seed_list

FAMILIES = ("learned", "learned_init", REFERENCE, FLOOR)
LABELS = {
    "learned": "Optim4RL (meta-trained)",
    "learned_init": "Optim4RL (random init)",
    "adam": "Adam (tuned)",
    "random": "untrained network",
}


def load(checkpoint: str) -> tuple[dict, dict]:
    """Meta-params and header from an optim4rl checkpoint file, a run folder, or a pretrained name."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / META_PARAMS
    if not path.exists() and checkpoint in optim4rl.pretrained_names():
        return optim4rl.pretrained(checkpoint)
    return optim4rl.load_meta_params(path)


def learned_family(meta_params: Any, kind: str, lrs, reward_scale: float, note: str = "") -> Family:
    """A learned optimizer over `lrs`. The protocol's clip (EvalConfig.grad_clip, before every
    optimizer) replaces its own input clip, so that every family sees the same gradients."""

    def make(lr: float):
        return optim4rl.learned(lr, meta_params, kind, grad_clip=None)

    return Family(make, _unique(lrs), reward_scale, note)


def evaluate(
    meta_params,
    kind: str,
    ec: EvalConfig,
    lrs=LR_GRID,
    adam: tuple[dict[str, float], str] | None = None,
    reward_scale: dict | None = None,
    init: Any = None,
    progress: bool = True,
) -> dict:
    """`compare_families` of learned, learned_init (`init`, default `init_meta_params(key(0))`),
    adam and random on every task of `ec`: {"results", "comparison"}.

    learned, learned_init and adam are swept over the same `lrs`, unless `adam` = ({task: lr},
    note) fixes Adam's lr per task (then its one candidate runs on the evaluation seeds only, and
    `note` says where it was chosen). `reward_scale` {task: c} (default 1) multiplies the rewards in
    the two learned families' A2C loss, as in meta-training; returns are reported unscaled.
    """
    reward_scale = reward_scale or {}
    if init is None:
        init = optim4rl.init_meta_params(jax.random.key(0), kind)
    families = {}
    for task in ec.tasks:
        scale = float(reward_scale.get(task, 1.0))
        families[task] = {
            "learned": learned_family(meta_params, kind, lrs, scale),
            "learned_init": learned_family(init, kind, lrs, scale),
            REFERENCE: hand_family("adam", [adam[0][task]], adam[1])
            if adam
            else hand_family("adam", lrs),
            FLOOR: random_family(),
        }
    return compare_families(ec, families, progress, "evaluate")


def plot_curves(payload: dict, out: Path) -> None:
    """curves.png / curves.pdf (`curves_figure`), written atomically."""
    fig = curves_figure(payload)
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120)
        atomic_write(out / f"curves.{ext}", buf.getvalue())
    fig.clf()


def curves_figure(payload: dict):
    """Per task, each family's mean logged return over its evaluation seeds against environment
    steps, with a pointwise 95% t band (`stats.mean_ci`)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    results = payload["results"]
    n = len(results)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (task, per) in zip(axes.flat, results.items(), strict=False):
        for name, r in per.items():
            y = np.asarray(r["curves"], float)  # [seeds, evals]
            x = np.asarray(r["curve_steps"], float)
            mean, low, high = stats.mean_ci(y)
            line = ax.plot(x, mean, label=f"{LABELS.get(name, name)} (lr {g3(r['lr'])})")[0]
            if y.shape[0] > 1:
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(task)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("episode return (finished in window)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def own_init(header: dict) -> tuple[Any, str]:
    """The checkpoint's own random initialisation where its provenance says which (a
    `meta_train` run of a seed, not started from --init), else `init_meta_params(key(0))`."""
    prov = header.get("provenance", {})
    if "seed" in prov and prov.get("random_init", True):
        seed = int(prov["seed"])
        assumed = "" if "random_init" in prov else " (assumed: no random_init field, older run)"
        return initial_meta_params(seed, header["kind"]), f"the run's own, seed {seed}{assumed}"
    return None, "init_meta_params(key(0)) (the checkpoint does not record its initialisation)"


def adam_from_baselines(path: str, ec: EvalConfig) -> tuple[dict[str, float], str]:
    """Adam's lr per task from a `baselines` run's baselines.json, and the report's note on where
    it was chosen (ValueError where a task has no Adam result)."""
    payload = json.loads(Path(path).read_text())
    tuned = payload.get("results", {})
    missing = [t for t in ec.tasks if "adam" not in tuned.get(t, {})]
    if missing:
        raise ValueError(f"{path} has no Adam result for {missing}")
    seeds = payload.get("header", {}).get("tuning_seeds")
    if seeds is None:
        where = "on seeds it does not record (an older baselines.json chose on its reported seeds)"
    else:
        where = f"on tuning seeds {seed_list(seeds)}"
        if set(seeds) & set(ec.seed_ids):
            where += ", which overlap these evaluation seeds"
    return {t: float(tuned[t]["adam"]["lr"]) for t in ec.tasks}, f"chosen by {path} {where}"


def main(argv: list[str]) -> int:
    args = evaluate_parser().parse_args(argv)
    try:
        ec = eval_config_from_args(args)
        meta_params, header = load(args.checkpoint)
        adam = None
        if args.baselines:
            adam = adam_from_baselines(args.baselines, ec)
        elif args.adam_lr:
            adam = (dict.fromkeys(ec.tasks, args.adam_lr), "--adam-lr, not chosen here")
    except (ValueError, FileNotFoundError, optim4rl.CheckpointError) as err:
        return error(str(err))
    lrs = _unique(args.lr or LR_GRID)
    scale = {}
    if args.reward_scale == "checkpoint":
        scale = header.get("provenance", {}).get("reward_scale", {}) or {}
    init, init_note = own_init(header)
    try:
        payload = evaluate(
            meta_params, header["kind"], ec, lrs, adam, scale, init, progress=not args.no_progress
        )
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    scales = {t: float(scale.get(t, 1.0)) for t in ec.tasks}
    info = {
        "command": "evaluate",
        "checkpoint": args.checkpoint,
        "kind": header["kind"],
        "reward_scale": {"learned": scales, "learned_init": scales, "adam": None, "random": None},
        "lrs": list(lrs),
        "adam": {"lrs": adam[0], "note": adam[1]} if adam else "swept over lrs",
        "evaluation_seeds": ec.seed_ids,
        "tuning_seeds": ec.tuning_seed_ids,
        "selection": SELECTION_RULE,
        "score": SCORE_RULE,
        "learned_init": init_note,
        "eval_config": ec.to_json(),
        "checkpoint_header": header,
    }
    scale_text = ", ".join(f"{t} {g3(c)}" for t, c in scales.items())
    lines = [
        f"checkpoint: {args.checkpoint} ({header['kind']}); learned_init: {init_note}",
        f"lr grid (learned, learned_init{'' if adam else ', adam'}): {', '.join(map(g3, lrs))}"
        + (f"; adam: 1 candidate, {adam[1]}" if adam else ""),
        f"reward scale in the loss of learned and learned_init: {scale_text} "
        f"({args.reward_scale}); adam and random: none",
        *protocol_lines(ec),
    ]
    out = Path(args.out)
    md = write_outputs(
        out, "eval", f"evaluate {args.checkpoint}", lines, {"header": info, **payload}
    )
    plot_curves(payload, out)
    print(md)
    return 0
