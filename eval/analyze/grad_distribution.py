"""Optim4RL Fig. 1 (and Fig. 5): distributions of agent-gradient coordinates, RL vs supervised.

Both settings train the spec's gridworld network (`meta_train.a2c.ActorCritic`) with the same
optimizer family and record every gradient coordinate over a window of W updates at the start,
the middle and the end of training:

- RL: meta_train's A2C on a gridworld (default big_dense_long, as in the paper), the gradient of
  the A2C loss averaged over `num_envs` environments x 20 steps (the authors average over 512 envs).
- Supervised: the same network (policy head as 9 class logits; the unused value head is left out)
  trained by cross-entropy on a fixed dataset generated in code, a stand-in for MNIST (nothing is
  downloaded): observations drawn from the gridworld's reset distribution (agent and objects on
  distinct uniform random cells), labelled by the compass direction sign(object_0 - agent) from the
  agent to the first +1 object, as an index into the 9 moves (stay never occurs). Minibatches are
  drawn uniformly with replacement.

Statistics of x = log10(|g| + 1e-8) per (setting, phase), pooled over the window, seeds and
coordinates: quantiles, inter-quartile range, the fraction of exactly-zero coordinates, histogram
densities on the authors' bins (-9, -8.5, ..., 5), and the movement between phases as the
1-Wasserstein distance between the phases' x distributions (in decades) and the shift of the median.

`python -m eval analyze grad-distribution [--preset cpu|paper] [--out DIR]` writes
grad_distribution.{png,pdf,json} into --out (default runs/analyze/grad-distribution).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from eval.analyze import cli
from eval.plots import pyplot
from meta_train import envs
from meta_train.a2c import A2CConfig, ActorCritic, Agent, TrainState
from meta_train.gridworld import MOVES
from meta_train.protocol import OPTIMIZERS
from optim4rl.checkpoint import atomic_write_bytes

FLOOR = 1e-8  # log10(|g| + FLOOR): exactly-zero coordinates land at -8
EDGES = np.arange(-9.0, 5.0 + 1e-9, 0.5)  # the authors' bins
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
PHASES = ("start", "middle", "end")
SETTINGS = ("rl", "supervised")


@dataclass(frozen=True)
class GradConfig:
    """Sizes of both runs. Defaults = the authors' collection runs (paper scale)."""

    task: str = "big_dense_long"
    optimizer: str = "rmsprop"  # the paper's Figs. 1 and 5 use RMSProp
    rl_lr: float = 3e-3  # authors' RL collection: RMSProp 3e-3, global-norm clip 1
    rl_clip: float = 1.0
    num_envs: int = 512
    rl_updates: int = 2900  # ~3e7 env steps / (512 envs x 20 steps), rounded to a multiple of W
    sl_lr: float = 3e-4  # authors' MNIST collection: RMSProp 3e-4, no clip, batch 128, 10 epochs
    sl_batch: int = 128
    sl_dataset: int = 60000
    sl_updates: int = 4600  # 10 epochs of 60000 / 128, rounded to a multiple of W
    window: int = 100
    seeds: int = 1
    seed: int = 0

    def __post_init__(self):
        if envs.check_task(self.task) not in envs.GRIDWORLD_TASKS:
            raise ValueError(f"task must be a gridworld ({', '.join(envs.GRIDWORLD_TASKS)})")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        for name in ("num_envs", "sl_batch", "sl_dataset", "window", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rl_lr", "sl_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("rl_updates", "sl_updates"):
            n = getattr(self, name)
            if n < 3 * self.window or n % self.window:
                raise ValueError(
                    f"{name}={n} must be a multiple of --window={self.window} and at least 3 "
                    "windows (start, middle and end must not overlap)"
                )


PRESETS = {
    "paper": GradConfig(),
    "cpu": GradConfig(
        num_envs=16, rl_updates=750, sl_dataset=20000, sl_updates=750, window=25, seeds=1
    ),
}


class Collected(NamedTuple):
    """What one setting's training produced.

    grads: (phases, seeds, W, P) float32, every coordinate of every update in the windows.
    windows: (phases,) first update index of each window. metrics: name -> (seeds, updates).
    extras: per phase, what `debug` steps return besides the gradient (inputs of each update).
    """

    grads: np.ndarray
    windows: tuple[int, ...]
    metrics: dict[str, np.ndarray]
    extras: list[Any] | None


# A step maps (state, key) -> (state, (flat gradient (P,), metrics, extras)).
Step = Callable[[Any, jax.Array], tuple[Any, tuple[jax.Array, dict, Any]]]


def phase_windows(num_updates: int, window: int) -> tuple[int, int, int]:
    """First update of the start, middle and end windows; all are multiples of `window`."""
    chunks = num_updates // window
    return (0, (chunks // 2) * window, (chunks - 1) * window)


def collect(
    init: Callable[[jax.Array], Any],
    step: Step,
    key: jax.Array,
    num_updates: int,
    window: int,
    seeds: int,
    desc: str = "",
    progress: bool = True,
) -> Collected:
    """Train `seeds` copies (vmapped) for `num_updates` steps in jitted scans of `window` updates
    and keep the gradients of the three phase windows. The key of update t is the same whatever
    the window, so the run does not depend on how it is chunked."""
    k_init, k_run = jax.random.split(key)
    state = jax.jit(jax.vmap(init))(jax.random.split(k_init, seeds))
    keys = jax.vmap(lambda k: jax.random.split(k, num_updates))(jax.random.split(k_run, seeds))

    @jax.jit
    def chunk(state, keys):  # keys (seeds, W)
        def one(s, k):
            return jax.lax.scan(step, s, k)

        return jax.vmap(one)(state, keys)

    windows = phase_windows(num_updates, window)
    grads, extras, metrics = [], [], []
    for start in tqdm(range(0, num_updates, window), desc=desc, disable=not progress):
        state, (g, m, e) = chunk(state, keys[:, start : start + window])
        metrics.append(jax.device_get(m))
        if start in windows:
            grads.append(np.asarray(g))
            extras.append(jax.device_get(e))
    merged = {k: np.concatenate([m[k] for m in metrics], axis=1) for k in metrics[0]}
    has_extras = jax.tree_util.tree_leaves(extras)
    return Collected(np.stack(grads), windows, merged, extras if has_extras else None)


# ---------------------------------------------------------------- RL: A2C on a gridworld


def rl_optimizer(c: GradConfig) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(c.rl_clip), OPTIMIZERS[c.optimizer](c.rl_lr))


def make_rl(c: GradConfig, debug: bool = False) -> tuple[Agent, Callable, Step]:
    """meta_train's A2C update (as in `make_train_fn`), also returning the flat gradient.
    With `debug` each step also returns its inputs (params, trajectory, bootstrap observation)."""
    agent = Agent(A2CConfig(task=c.task, num_envs=c.num_envs, num_updates=c.rl_updates))
    opt = rl_optimizer(c)

    def init(key):
        k_params, k_env = jax.random.split(key)
        params = agent.init_params(k_params)
        return TrainState(params, opt.init(params), agent.init_env(k_env))

    def step(state: TrainState, key):
        traj, env = agent.rollout(state.params, state.env, key)
        grads = jax.grad(lambda p: agent.loss(p, traj, env.obs)[0])(state.params)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"episode_return": env.last.mean(), "reward_rate": traj.reward.mean()}
        extras = (state.params, traj, env.obs) if debug else None
        return TrainState(params, opt_state, env), (ravel_pytree(grads)[0], metrics, extras)

    return agent, init, step


# ---------------------------------------------------------------- supervised stand-in for MNIST


def direction_label(agent: jax.Array, target: jax.Array) -> jax.Array:
    """Index into MOVES of (sign(target_row - agent_row), sign(target_col - agent_col))."""
    d = jnp.sign(target - agent).astype(jnp.int32)
    return jnp.argmax(jnp.all(d == MOVES, axis=-1))


def make_dataset(task: str, size: int, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`size` reset observations of `task` as uint8 (size, rows, cols, C) and their labels
    (size,) int32: the direction from the agent to object 0 (a +1 object)."""
    env, params = envs.make(task)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, size), params)
    labels = jax.vmap(direction_label)(state.agent, state.objects[:, 0])
    return obs.astype(jnp.uint8), labels.astype(jnp.int32)


def sl_params(params: Any) -> Any:
    """The parameters the classifier uses: all but the value head."""
    return {"params": {k: v for k, v in params["params"].items() if k != "value"}}


def make_sl(
    c: GradConfig, data: tuple[jax.Array, jax.Array], debug: bool = False
) -> tuple[ActorCritic, Callable, Step]:
    """Minibatch cross-entropy training of the gridworld network's policy head as a classifier.
    State: (params, opt_state). The value head gets zero gradients and stays at its init; the
    flat gradient leaves it out. With `debug` each step also returns (params, x, y)."""
    net = ActorCritic(9, envs.uses_conv(c.task))
    opt = OPTIMIZERS[c.optimizer](c.sl_lr)
    xs, ys = data
    dummy = jnp.zeros((1, *xs.shape[1:]), jnp.float32)

    def init(key):
        params = net.init(key, dummy)
        return params, opt.init(params)

    def loss(params, x, y):
        logits, _ = net.apply(params, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce, jnp.mean(jnp.argmax(logits, -1) == y)

    def step(state, key):
        params, opt_state = state
        idx = jax.random.randint(key, (c.sl_batch,), 0, xs.shape[0])
        x, y = xs[idx].astype(jnp.float32), ys[idx]
        (ce, acc), grads = jax.value_and_grad(loss, has_aux=True)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        new = optax.apply_updates(params, updates)
        flat = ravel_pytree(sl_params(grads))[0]
        extras = (params, x, y) if debug else None
        return (new, opt_state), (flat, {"loss": ce, "accuracy": acc}, extras)

    return net, init, step


# ---------------------------------------------------------------- statistics (numpy)


def log_abs(g: np.ndarray) -> np.ndarray:
    """x = log10(|g| + 1e-8) in float64."""
    return np.log10(np.abs(np.asarray(g, np.float64)) + FLOOR)


def histogram(x: np.ndarray, edges: np.ndarray = EDGES) -> dict[str, Any]:
    """Density histogram of x on `edges`; values outside go to the end bins and are counted."""
    x = np.ravel(x)
    outside = int(np.sum((x < edges[0]) | (x > edges[-1])))
    counts, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)
    density = counts / (counts.sum() * np.diff(edges))
    return {"counts": counts.tolist(), "density": density.tolist(), "outside": outside}


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """W1 = integral |F_a(t) - F_b(t)| dt between the empirical distributions of a and b."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)))


def phase_stats(g: np.ndarray) -> dict[str, Any]:
    """Statistics of x = log10(|g| + 1e-8) over all entries of g (..., W, P), and of the
    per-update medians (how much the scale moves from update to update within the window)."""
    x = log_abs(g)
    q = np.quantile(x, QUANTILES)
    nonzero = x[g != 0]
    nzq = np.quantile(nonzero, QUANTILES) if nonzero.size else np.full(len(QUANTILES), np.nan)
    per_update = np.median(x.reshape(-1, x.shape[-1]), axis=-1)
    return {
        "coordinates": int(x.size),
        "frac_zero": float(np.mean(g == 0)),
        "quantiles": dict(
            zip([f"q{int(100 * p):02d}" for p in QUANTILES], q.tolist(), strict=True)
        ),
        "iqr": float(q[3] - q[1]),
        "range90": float(q[4] - q[0]),
        "nonzero_iqr": float(nzq[3] - nzq[1]),
        "nonzero_median": float(nzq[2]),
        "update_median_std": float(np.std(per_update)),
        "histogram": histogram(x),
    }


def summarize(grads: np.ndarray) -> dict[str, Any]:
    """Per-phase statistics of grads (phases, seeds, W, P) and the movement between phases."""
    xs = [log_abs(grads[p]) for p in range(len(PHASES))]
    per_phase = {name: phase_stats(grads[p]) for p, name in enumerate(PHASES)}
    med = [per_phase[name]["quantiles"]["q50"] for name in PHASES]
    pairs = {"start_middle": (0, 1), "middle_end": (1, 2), "start_end": (0, 2)}
    return {
        "phases": per_phase,
        "w1": {k: wasserstein1(xs[i], xs[j]) for k, (i, j) in pairs.items()},
        "median_shift": {k: med[j] - med[i] for k, (i, j) in pairs.items()},
        "mean_iqr": float(np.mean([per_phase[n]["iqr"] for n in PHASES])),
    }


def compare(rl: dict, sl: dict) -> dict[str, Any]:
    """The paper's claim in numbers: RL gradients spread wider (IQR of x over the non-zero
    coordinates, mean over phases; exact zeros sit at -8 and would swamp the IQR) and move more
    between phases (largest W1 between two phases, all coordinates)."""
    spread = {
        k: float(np.mean([r["phases"][p]["nonzero_iqr"] for p in PHASES]))
        for k, r in (("rl", rl), ("supervised", sl))
    }
    moves = {"rl": max(rl["w1"].values()), "supervised": max(sl["w1"].values())}
    return {
        "nonzero_iqr": spread,
        "iqr_all": {"rl": rl["mean_iqr"], "supervised": sl["mean_iqr"]},
        "max_w1": moves,
        "rl_wider": bool(spread["rl"] > spread["supervised"]),
        "rl_moves_more": bool(moves["rl"] > moves["supervised"]),
    }


def curve_means(metrics: dict[str, np.ndarray], windows: tuple[int, ...], w: int) -> dict:
    """Mean of each metric over each phase window (seeds pooled)."""
    return {
        k: {name: float(v[:, s : s + w].mean()) for name, s in zip(PHASES, windows, strict=True)}
        for k, v in metrics.items()
    }


# ---------------------------------------------------------------- plot and CLI


def plot(results: dict, labels: dict[str, str]) -> dict[str, bytes]:
    """2 x 3 density histograms (rows: settings, columns: phases) as PNG and PDF bytes."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4), sharex=True)
    for r, setting in enumerate(SETTINGS):
        for col, phase in enumerate(PHASES):
            ax, st = axes[r, col], results[setting]["phases"][phase]
            ax.stairs(st["histogram"]["density"], EDGES, fill=True, alpha=0.7)
            ax.axvline(st["quantiles"]["q50"], color="k", lw=1)
            ax.set_title(
                f"{labels[setting]}: {phase}\nIQR {st['iqr']:.2f}, zero {st['frac_zero']:.0%}",
                fontsize=9,
            )
            ax.grid(alpha=0.3)
            if r == 1:
                ax.set_xlabel(r"$\log_{10}(|g| + 10^{-8})$")
            if col == 0:
                ax.set_ylabel("density")
    fig.tight_layout()
    out = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=120)
        out[fmt] = buf.getvalue()
    plt.close(fig)
    return out


def run(c: GradConfig, progress: bool = True) -> dict[str, Any]:
    """Both trainings, their statistics and timings."""
    key_rl, key_data, key_sl = jax.random.split(jax.random.key(c.seed), 3)
    t0 = time.time()
    _, init, step = make_rl(c)
    rl = collect(init, step, key_rl, c.rl_updates, c.window, c.seeds, "A2C", progress)
    t1 = time.time()
    data = make_dataset(c.task, c.sl_dataset, key_data)
    _, init, step = make_sl(c, data)
    sl = collect(init, step, key_sl, c.sl_updates, c.window, c.seeds, "supervised", progress)
    t2 = time.time()
    results = {"rl": summarize(rl.grads), "supervised": summarize(sl.grads)}
    return {
        "config": asdict(c),
        "parameters": {"rl": int(rl.grads.shape[-1]), "supervised": int(sl.grads.shape[-1])},
        "windows": {"rl": list(rl.windows), "supervised": list(sl.windows)},
        "training": {
            "rl": curve_means(rl.metrics, rl.windows, c.window),
            "supervised": curve_means(sl.metrics, sl.windows, c.window),
        },
        **results,
        "comparison": compare(results["rl"], results["supervised"]),
        "seconds": {"rl": t1 - t0, "supervised": t2 - t1, "stats": time.time() - t2},
    }


def report_lines(res: dict) -> list[str]:
    lines = [f"{'setting':<11}{'phase':<8}{'q05':>7}{'q25':>7}{'q50':>7}{'q75':>7}{'q95':>7}"]
    lines[0] += f"{'IQR':>7}{'zero':>7}"
    for s in SETTINGS:
        for p in PHASES:
            st = res[s]["phases"][p]
            q = st["quantiles"]
            lines.append(
                f"{s:<11}{p:<8}"
                + "".join(f"{q[k]:>7.2f}" for k in ("q05", "q25", "q50", "q75", "q95"))
                + f"{st['iqr']:>7.2f}{st['frac_zero']:>7.2f}"
            )
        w1 = res[s]["w1"]
        lines.append(
            f"{s:<11}W1 start-middle {w1['start_middle']:.3f}, middle-end "
            f"{w1['middle_end']:.3f}, start-end {w1['start_end']:.3f} (decades)"
        )
    lines.append(
        "nonzero_iqr/median per phase: "
        + json.dumps(
            {
                s: {
                    p: [
                        round(res[s]["phases"][p]["nonzero_iqr"], 3),
                        round(res[s]["phases"][p]["nonzero_median"], 3),
                    ]
                    for p in PHASES
                }
                for s in SETTINGS
            }
        )
    )
    lines.append(f"training: {json.dumps(res['training'])}")
    lines.append(f"comparison: {json.dumps(res['comparison'])}")
    return lines


def main(argv: list[str]) -> int:
    p = cli.grad_distribution()
    args = p.parse_args(argv)
    names = [f for f in GradConfig.__dataclass_fields__ if getattr(args, f, None) is not None]
    try:
        c = replace(PRESETS[args.scale], **{f: getattr(args, f) for f in names})
    except ValueError as err:
        p.error(str(err))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} exists and is not a folder")
    print(f"grad-distribution ({args.scale}): {c}")
    res = run(c, progress=not args.no_progress)
    labels = {"rl": f"A2C {c.task}", "supervised": "supervised (MNIST stand-in)"}
    figs = plot(res, labels)
    for fmt, data in figs.items():
        atomic_write_bytes(out / f"grad_distribution.{fmt}", data)
    atomic_write_bytes(out / "grad_distribution.json", json.dumps(res, indent=1).encode())
    print("\n".join(report_lines(res)))
    print(f"written: {out}/grad_distribution.{{png,pdf,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
