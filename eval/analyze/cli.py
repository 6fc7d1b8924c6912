"""The options of every `python -m eval analyze NAME`, in a module that imports no JAX, so that
`--help` and option errors answer at once (each analysis module parses with its parser here).

`--preset` picks an analysis's sizes (`--scale`, its old name, still works); it is stored as
`args.scale`, the name the analysis modules use. Choices and defaults named here rather than
imported (their modules load JAX) are checked by tests/test_cli.py.
"""

from __future__ import annotations

from meta_train.cli import OPTIMIZERS
from optim4rl.runtime.cli import (
    ArgumentParser,
    add_preset_argument,
    non_negative_float,
    non_negative_int,
    positive_int,
)

PRESETS = ("cpu", "paper")  # SCALES / PRESETS of each analysis module
DEFAULT_PAIRS = ("3e-4,3e-4", "1e-5,3e-4", "0,3e-4", "3e-4,0", "0,6e-3")  # output_variation
DEFAULT_LEARNED = ("3e-4", "1e-5")  # output_variation


def output_variation() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval analyze output-variation",
        description="RESeL Fig. 3: action variation vs rollout step after one policy gradient "
        "step, per (LR_CE, LR_other), with Proposition 1's bound estimated on the episodes.",
    )
    add_preset_argument(p, PRESETS, "cpu", "the sizes of the analysis", dest="scale")
    p.add_argument(
        "--run",
        help="a `python -m resel --out` folder: restore its policy, critic and replay buffer "
        "(default: a fresh policy and a warm-up buffer)",
    )
    p.add_argument("--seed-index", type=non_negative_int, default=0, help="which seed of --run")
    p.add_argument("--env", help="task when there is no --run (default: the preset's)")
    p.add_argument(
        "--episodes", type=positive_int, help="episodes averaged over (default: the preset's)"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        help="rollout steps T, at most the episode length (default: the preset's)",
    )
    p.add_argument(
        "--pairs",
        nargs="+",
        default=list(DEFAULT_PAIRS),
        metavar="LR_CE,LR_OTHER",
        help="AdamW learning rates of the context encoder and of the rest",
    )
    p.add_argument(
        "--learned",
        nargs="*",
        default=list(DEFAULT_LEARNED),
        metavar="LR",
        help="learning rates of Optim4RL on the context encoder (none: leave out)",
    )
    p.add_argument(
        "--learned-other", type=non_negative_float, default=3e-4, help="AdamW LR of the rest"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="rollout seed")
    p.add_argument("--out", help="output folder (default runs/analyze/output-variation-PRESET)")
    return p


def training_dynamics() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval analyze training-dynamics",
        description="RESeL Figs. 4-5: policy/critic gradient norms and value loss over training, "
        "per optimizer, mean +- standard error over seeds.",
    )
    p.add_argument(
        "folders",
        nargs="*",
        help="study folders (`python -m eval run`) or RESeL run folders (`python -m resel "
        "--out`); default: runs/ce_learning_rate-PRESET",
    )
    add_preset_argument(
        p, PRESETS, "cpu", "which ce_learning_rate study to read when no folder is given", "scale"
    )
    p.add_argument("--variants", nargs="+", help="keep only variants whose name contains one")
    p.add_argument("--out", help="output folder (default: runs/analyze/training-dynamics-PRESET)")
    return p


def context_embedding() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval analyze context-embedding",
        description="RESeL Fig. 14: context-encoder embeddings under many gravities, projected to "
        "2-d (t-SNE or PCA) and coloured by gravity; R^2 of a linear fit of log gravity on "
        "held-out gravities.",
    )
    add_preset_argument(p, PRESETS, "cpu", "the sizes of the analysis", dest="scale")
    p.add_argument(
        "--run", help="a `python -m resel --out` folder of a gravity task (skips training)"
    )
    p.add_argument("--env", help="gravity task to train on (default: the preset's)")
    p.add_argument(
        "--train-steps",
        type=positive_int,
        help="environment steps of the brief training (default: the preset's)",
    )
    p.add_argument(
        "--episode-length",
        type=positive_int,
        help="steps per episode, training and rollouts (default: the preset's)",
    )
    p.add_argument(
        "--episodes", type=positive_int, help="episodes per gravity (default: the preset's)"
    )
    p.add_argument(
        "--burn-in",
        type=non_negative_int,
        help="steps since the episode start left out (default: the preset's)",
    )
    p.add_argument(
        "--projection",
        choices=("tsne", "pca"),
        default="tsne",
        help="2-d projection of the plot (t-SNE, as in the paper, or PCA)",
    )
    p.add_argument(
        "--tsne-points",
        type=positive_int,
        default=2000,
        help="steps drawn for the exact t-SNE (O(n^2) memory and time)",
    )
    p.add_argument(
        "--gravity-seed", type=non_negative_int, default=0, help="seed of the 60-gravity set"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="training and rollout seed")
    p.add_argument("--out", help="output folder (default runs/analyze/context-embedding-PRESET)")
    return p


def grad_distribution() -> ArgumentParser:
    """The sizes and learning rates are checked by `GradConfig` (one line each, at parse time)."""
    p = ArgumentParser(
        prog="python -m eval analyze grad-distribution",
        description="Optim4RL Fig. 1: histograms of log10(|g|+1e-8) of agent gradients at the "
        "start, middle and end of training, A2C on a gridworld vs supervised classification.",
    )
    add_preset_argument(p, PRESETS, "cpu", "the sizes of the analysis", dest="scale")
    p.add_argument("--out", default="runs/analyze/grad-distribution", help="output folder")
    p.add_argument("--task", help="gridworld task (default: the preset's, big_dense_long)")
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="optimizer of both runs (default: the preset's, rmsprop)",
    )
    p.add_argument(
        "--rl-lr",
        type=float,
        help="learning rate of the A2C run (default: the preset's)",
    )
    p.add_argument(
        "--sl-lr",
        type=float,
        help="learning rate of the supervised run (default: the preset's)",
    )
    p.add_argument(
        "--num-envs",
        type=int,
        help="parallel environments of the A2C run (default: the preset's)",
    )
    p.add_argument(
        "--updates",
        type=int,
        dest="rl_updates",
        help="A2C updates (default: the preset's)",
    )
    p.add_argument("--sl-updates", type=int, help="supervised updates (default: the preset's)")
    p.add_argument("--sl-batch", type=int, help="supervised batch size (default: the preset's)")
    p.add_argument("--sl-dataset", type=int, help="supervised dataset size (default: the preset's)")
    p.add_argument("--window", type=int, help="updates collected per phase (default: the preset's)")
    p.add_argument("--seeds", type=int, help="runs per setting, vmapped (default: the preset's)")
    p.add_argument("--seed", type=non_negative_int, help="first seed (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p
