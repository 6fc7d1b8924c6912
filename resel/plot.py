"""Plots of a RESeL run folder: `python -m resel.plot RUN_DIR [RUN_DIR ...]`.

Writes RUN_DIR/curves.png and .pdf: evaluation return per seed (and their mean), the evaluation
success rate where the task reports one (Key-to-Door), critic loss, policy gradient norm per
module, and alpha, against environment steps.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of RUN_DIR/metrics.jsonl (evaluation rows only, events skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    rows = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
    return [r for r in rows if "event" not in r]


def curves_figure(rows: list[dict], title: str = ""):
    """The run's panels (see the module docstring) as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    by_seed: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_seed[r["seed"]].append(r)
    panels = [("eval_return", "evaluation return")]
    if all("eval_success" in r for r in rows):
        panels.append(("eval_success", "evaluation success rate"))
    panels += [
        ("critic_loss", "critic loss"),
        (None, "policy grad norm per module"),
        ("alpha", "alpha"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.25 * len(panels), 3.6))
    for ax, (key, title_) in zip(axes, panels, strict=True):
        ax.set_title(title_)
        ax.set_xlabel("environment steps")
        if key is None:
            modules = sorted({k.split("/")[-1] for k in rows[0] if k.startswith("policy/grad")})
            for mod in modules:
                k = f"policy/grad_norm/{mod}"
                steps = sorted({r["step"] for r in rows})
                vals = [np.mean([r[k] for r in rows if r["step"] == s]) for s in steps]
                ax.plot(steps, vals, label=mod)
            ax.set_yscale("log")
            ax.legend(fontsize=7)
            continue
        for seed, rs in sorted(by_seed.items()):
            ax.plot([r["step"] for r in rs], [r[key] for r in rs], alpha=0.5, label=f"seed {seed}")
        if key.startswith("eval_") and len(by_seed) > 1:
            steps = sorted({r["step"] for r in rows})
            mean = [np.mean([r[key] for r in rows if r["step"] == s]) for s in steps]
            ax.plot(steps, mean, color="k", lw=2, label="mean")
        if key == "critic_loss":
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw the run's curves; returns the PNG and PDF paths."""
    import matplotlib.pyplot as plt

    fig = curves_figure(load_metrics(run_dir), str(run_dir))
    out = [Path(run_dir) / "curves.png", Path(run_dir) / "curves.pdf"]
    for p in out:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m resel.plot RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    for d in argv:
        for p in plot_run(d):
            print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
