"""`python -m eval analyze output-variation`: RESeL Fig. 3 and Proposition 1.

A RESeL policy (fresh, or restored from a `python -m resel` run folder) takes ONE gradient step on
RESeL's policy loss (resel.losses.policy_loss on a replay-buffer batch) with per-module optimizers
{context_encoder: LR_CE spec, default: LR_other spec} (optim4rl.from_spec, as the studies build
them). Along the same input sequences (deterministic episodes of the pre-update policy) we measure

    v_t = mean over episodes of || a'_t - a_t ||_2,   a_t = tanh(mu_theta(history_t)),

for t = 1..T. Proposition 1 (Luo et al. 2024) bounds it by

    || y_t - y'_t || <= Ky * sum_{i<t} Kh^i * eps + eps   (= Ky (1 - Kh^t)/(1 - Kh) eps + eps),

with f(x, h) -> (y, h_next) the policy's single-step map (h = the whole recurrent carry). We
estimate the constants on the visited states, exactly where the proof uses them:
eps = max_t max(|f_y^theta'(x_t, h_t) - f_y^theta(x_t, h_t)|, |f_h^theta'(...) - f_h^theta(...)|),
Kh, Ky = max over both parameter sets of |f(x_t, h_t) - f(x_t, h'_t)| / |h_t - h'_t| over the pairs
of carries (h_t of theta, h'_t of theta') met along the episodes. With these the bound provably
holds on these episodes (the proof's two triangle inequalities), so it is a check, not a fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from eval.analyze import cli
from eval.analyze.common import (
    AnalysisError,
    load_resel_run,
    out_dir,
    write_csv,
    write_json,
)
from eval.analyze.common import (
    rollout as common_rollout,
)
from eval.plots import pyplot, save_figure

SCALES = {
    # paper: WalkerBLT-V-v0 (Brax stand-in Walker2d-V), 1000-step episodes, paper networks
    "paper": {"env": "Walker2d-V", "episodes": 10, "steps": 1000},
    "cpu": {"env": "Pendulum-P", "episodes": 8, "steps": 200},
}
# (LR_CE, LR_other): equal LR, RESeL's CE-specific LR, heads only, CE only, heads only at 20x
DEFAULT_PAIRS = cli.DEFAULT_PAIRS
DEFAULT_LEARNED = cli.DEFAULT_LEARNED  # optim4rl(learning_rate=.) on the CE, adamw(LR_other) else
REL_TOL = (
    1e-4  # pairs with |h - h'| below this fraction of |h| are float noise, not a Lipschitz ratio
)


@dataclass(frozen=True)
class Setting:
    """One optimizer for the single step: specs of the context encoder and of everything else."""

    name: str
    ce_spec: str
    other_spec: str


def adamw(lr: float) -> str:
    return f"adamw(learning_rate={lr:g}, weight_decay=0.0)"


def settings_from(pairs: list[str], learned: list[str], learned_other: float) -> list[Setting]:
    out = []
    for p in pairs:
        try:
            ce, other = (float(x) for x in p.split(","))
        except ValueError as err:
            raise AnalysisError(f"--pairs {p!r}: expected LR_CE,LR_OTHER (e.g. 1e-5,3e-4)") from err
        if ce < 0 or other < 0:
            raise AnalysisError(f"--pairs {p!r}: learning rates must be >= 0")
        out.append(Setting(f"LR_CE={ce:g}, LR_other={other:g}", adamw(ce), adamw(other)))
    for lr in learned:
        out.append(
            Setting(
                f"Optim4RL(lr={float(lr):g}) on CE, LR_other={learned_other:g}",
                f"optim4rl(learning_rate={float(lr):g})",
                adamw(learned_other),
            )
        )
    return out


def action_of(mean: jax.Array, discrete: bool) -> jax.Array:
    """The policy output compared before/after: tanh(mu) (continuous) or softmax(logits)."""
    return jax.nn.softmax(mean) if discrete else jnp.tanh(mean)


def rollout(policy, params, env, env_params, key, episodes: int, steps: int):
    """Deterministic episodes of `params` from a zero carry (see common.rollout) -> (seq, alive)."""
    return common_rollout(policy, params, env, env_params, jax.random.split(key, episodes), steps)


def masked_mean(x: jax.Array, alive: jax.Array) -> np.ndarray:
    """Mean over episodes of x (episodes, T) where alive: -> (T,)."""
    x, alive = np.asarray(x, np.float64), np.asarray(alive, np.float64)
    return (x * alive).sum(0) / np.maximum(alive.sum(0), 1.0)


def output_variation(policy, before, after, seq, alive, discrete: bool = False):
    """v_t: mean over episodes of |a'_t - a_t|_2 on the same inputs (sequence method) -> (T,);
    also the per-episode values (episodes, T)."""
    per_episode = np.asarray(_seq_variation(policy, discrete, before, after, seq))
    return masked_mean(per_episode, alive), per_episode


@functools.partial(jax.jit, static_argnums=(0, 1))
def _seq_variation(policy, discrete: bool, before, after, seq) -> jax.Array:
    a0 = action_of(policy.apply(before, seq)[0], discrete)
    a1 = action_of(policy.apply(after, seq)[0], discrete)
    return jnp.linalg.norm(a1 - a0, axis=-1)


def _carry_dist(c1, c2) -> jax.Array:
    """|c1 - c2|_2 per batch element over every leaf of the recurrent carry -> (batch,)."""
    sq = [jnp.sum((a - b).reshape(a.shape[0], -1) ** 2, axis=1) for a, b in
          zip(jax.tree.leaves(c1), jax.tree.leaves(c2), strict=True)]  # fmt: skip
    return jnp.sqrt(sum(sq))


def step_quantities(policy, before, after, seq, discrete: bool = False) -> dict[str, np.ndarray]:
    """Single-step maps along the episodes, each (episodes, T), with h_t, h'_t the carries of
    theta (before) and theta' (after) on the same inputs:

    var        |f_y'(x_t, h'_t) - f_y(x_t, h_t)|       the measured variation (step by step)
    eps_y/h    |f'(x_t, h_t) - f(x_t, h_t)|             one-step variation, same input and carry
    d_h        |h_t - h'_t|, h_norm |h_t|
    lip_y/h_a  |f'(x_t, h_t) - f'(x_t, h'_t)|           (theta')   numerators of Ky, Kh
    lip_y/h_b  |f(x_t, h_t) - f(x_t, h'_t)|             (theta)
    """
    xs = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), seq)  # time first
    rec = _step_scan(policy, discrete, before, after, xs)
    return {k: np.asarray(v).T for k, v in rec.items()}  # (episodes, T)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _step_scan(policy, discrete: bool, before, after, xs) -> dict[str, jax.Array]:
    n = xs.obs.shape[1]
    step = lambda p, x, h: policy.apply(p, x, h, method=policy.step)  # noqa: E731
    out = lambda m: action_of(m, discrete)  # noqa: E731
    norm = lambda a, b: jnp.linalg.norm(a - b, axis=-1)  # noqa: E731
    zero = policy.apply(before, n, method=policy.initial_carry)

    def body(carry, x):
        h, hp = carry
        (m1, _), c1 = step(before, x, h)
        (m2, _), c2 = step(after, x, hp)
        (m3, _), c3 = step(after, x, h)
        (m4, _), c4 = step(before, x, hp)
        y1, y2, y3, y4 = out(m1), out(m2), out(m3), out(m4)
        rec = {
            "var": norm(y2, y1),
            "eps_y": norm(y3, y1),
            "eps_h": _carry_dist(c3, c1),
            "d_h": _carry_dist(h, hp),
            "h_norm": _carry_dist(h, jax.tree.map(jnp.zeros_like, h)),
            "lip_y_a": norm(y3, y2),
            "lip_h_a": _carry_dist(c3, c2),
            "lip_y_b": norm(y1, y4),
            "lip_h_b": _carry_dist(c1, c4),
        }
        return (c1, c2), rec

    return jax.lax.scan(body, (zero, zero), xs)[1]


def estimate_constants(q: dict[str, np.ndarray], alive: np.ndarray) -> dict[str, float]:
    """eps, Kh, Ky of Prop. 1 as maxima over the alive steps (and carry pairs that differ)."""
    alive = np.asarray(alive) > 0
    eps_y = float(np.max(q["eps_y"][alive], initial=0.0))
    eps_h = float(np.max(q["eps_h"][alive], initial=0.0))
    pair = alive & (q["d_h"] > REL_TOL * np.maximum(q["h_norm"], 1e-12))
    d = np.where(pair, q["d_h"], 1.0)
    kh = np.maximum(q["lip_h_a"], q["lip_h_b"]) / d
    ky = np.maximum(q["lip_y_a"], q["lip_y_b"]) / d
    return {
        "eps": max(eps_y, eps_h),
        "eps_y": eps_y,
        "eps_h": eps_h,
        "Kh": float(np.max(kh[pair], initial=0.0)),
        "Ky": float(np.max(ky[pair], initial=0.0)),
        "pairs": int(pair.sum()),
    }


def prop1_bound(eps: float, kh: float, ky: float, steps: int) -> np.ndarray:
    """Ky * sum_{i<t} Kh^i * eps + eps for t = 0..steps-1 (closed form when Kh < 1) -> (steps,)."""
    geometric = np.concatenate([[0.0], np.cumsum(float(kh) ** np.arange(steps - 1))])
    return ky * geometric * eps + eps


def one_step(params, grads, setting: Setting):
    """params after one update of the per-module optimizer {context_encoder, default}."""
    import optax

    import optim4rl

    tx = optim4rl.from_spec({"context_encoder": setting.ce_spec, "default": setting.other_spec})
    updates, _ = tx.update(grads, tx.init(params), params)
    return optax.apply_updates(params, updates)


def policy_gradient(trainer, agent, buffer, key) -> tuple[Any, float]:
    """Gradient of RESeL's policy loss on one replay-buffer batch; returns (grads, loss)."""
    from resel import buffer as rb
    from resel.losses import policy_loss

    k_batch, k_pi = jax.random.split(key)
    batch = rb.sample(buffer, k_batch, trainer.layout)
    critic, policy = trainer.critic, trainer.policy
    emb = critic.apply(agent.critic, batch.seq, method=critic.embed)

    def loss(p):
        return policy_loss(p, agent.critic, emb, agent.log_alpha, batch, k_pi,
                           policy=policy, critic=critic)[0]  # fmt: skip

    value, grads = jax.jit(jax.value_and_grad(loss))(agent.policy)
    return grads, float(value)


def _agent(args, scale: dict):
    """(env_name, env, env_params, trainer, agent, buffer, source) from --run or a fresh init."""
    from resel import config as C
    from resel import train

    if args.run:
        run = load_resel_run(args.run, args.seed_index)
        source = f"checkpoint {args.run} (seed {run.seed}, step {run.step})"
        return (run.env_name, run.env, run.env_params, run.trainer, run.state.agent,
                run.state.buffer, source)  # fmt: skip
    env_name = args.env or scale["env"]
    try:
        env, env_params = train.make_env(env_name)
        cfg = C.preset(args.scale, env_name)
    except ValueError as err:
        raise AnalysisError(str(err)) from err
    # the buffer only holds the warm-up data: size it to that
    warm = max(cfg.warmup_steps, 2 * int(env.episode_length(env_params)))
    warm -= warm % (cfg.policy_every * cfg.env_steps_per_update)
    cfg = dataclasses.replace(cfg, total_steps=warm, warmup_steps=warm)
    trainer = train.make_train(cfg, env, env_params)
    state = trainer.warmup(trainer.init(jax.random.PRNGKey(args.seed)[None]))
    state = jax.tree.map(lambda x: x[0], state)
    source = f"fresh initialisation (seed {args.seed}), buffer: {warm} uniform-random steps"
    return env_name, env, env_params, trainer, state.agent, state.buffer, source


def analyse(args) -> dict[str, Any]:
    """Everything the command computes: per setting the variation, constants and bound."""
    from tqdm.auto import tqdm

    scale = SCALES[args.scale]
    settings = settings_from(args.pairs, args.learned, args.learned_other)
    env_name, env, env_params, trainer, agent, buffer, source = _agent(args, scale)
    steps = min(args.steps or scale["steps"], int(env.episode_length(env_params)))
    episodes = args.episodes or scale["episodes"]
    policy = trainer.policy
    discrete = policy.discrete
    key = jax.random.PRNGKey(args.seed)
    k_roll, k_grad = jax.random.split(key)
    seq, alive = rollout(policy, agent.policy, env, env_params, k_roll, episodes, steps)
    grads, loss = policy_gradient(trainer, agent, buffer, k_grad)
    import optax

    gnorm = {k: float(optax.tree.norm(v)) for k, v in grads["params"].items()}
    results = []
    for s in tqdm(settings, desc="one-step updates", unit="setting"):
        after = one_step(agent.policy, grads, s)
        v, _ = output_variation(policy, agent.policy, after, seq, alive, discrete)
        q = step_quantities(policy, agent.policy, after, seq, discrete)
        const = estimate_constants(q, alive)
        bound = prop1_bound(const["eps"], const["Kh"], const["Ky"], steps)
        v_step = masked_mean(q["var"], alive)
        last = max(steps // 4, 1)
        results.append({
            "name": s.name, "ce_spec": s.ce_spec, "other_spec": s.other_spec,
            "variation": v, "variation_stepwise": v_step, "bound": bound, **const,
            "beta": const["Ky"] / (1 - const["Kh"]) if const["Kh"] < 1 else float("inf"),
            "v_first": float(v[0]), "v_max": float(v.max()), "v_last": float(v[-1]),
            "v_mean": float(v.mean()), "v_late": float(v[-last:].mean()),
            "amplification": float(v[-last:].mean() / v[0]) if v[0] > 0 else float("nan"),
            "bound_holds": bool(np.all(v <= bound * (1 + 1e-5) + 1e-7)),
            "stepwise_matches": float(np.max(np.abs(v_step - v))),
        })  # fmt: skip
    return {
        "env": env_name, "source": source, "scale": args.scale, "episodes": episodes,
        "steps": steps, "alive_last": float(np.asarray(alive)[:, -1].mean()),
        "policy_loss": loss, "grad_norm": gnorm, "settings": results,
    }  # fmt: skip


def plot(result: dict[str, Any], stem) -> list:
    """Left: steps 1..75 (the paper's zoom); right: all steps; measured solid, bound dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    t = np.arange(1, result["steps"] + 1)
    zoom = min(75, len(t))
    for s in result["settings"]:
        v = np.where(s["variation"] > 0, s["variation"], np.nan)
        for ax, n in ((axes[0], zoom), (axes[1], len(t))):
            (line,) = ax.plot(t[:n], v[:n], label=s["name"])
            ax.plot(t[:n], s["bound"][:n], "--", color=line.get_color(), linewidth=0.8)
    for ax, title in zip(axes, ("rollout steps 1-75", "all rollout steps"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("rollout step t")
        ax.set_ylabel("action variation |a'_t - a_t|")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, title="solid: measured, dashed: Prop. 1 bound", title_fontsize=7)
    fig.suptitle(f"{result['env']}: action variation after one policy step ({result['source']})",
                 fontsize=8)  # fmt: skip
    fig.tight_layout()
    paths = save_figure(fig, stem, dpi=130)
    plt.close(fig)
    return paths


def write_outputs(result: dict[str, Any], out) -> list:
    names = [s["name"] for s in result["settings"]]
    header = ["step"] + [f"{n} | variation" for n in names] + [f"{n} | bound" for n in names]
    rows = [
        [t + 1]
        + [float(s["variation"][t]) for s in result["settings"]]
        + [float(s["bound"][t]) for s in result["settings"]]
        for t in range(result["steps"])
    ]
    files = [write_csv(out / "variation.csv", header, rows)]
    summary = {**result, "settings": [
        {k: v for k, v in s.items() if k not in ("variation", "variation_stepwise", "bound")}
        | {"bound_first": float(s["bound"][0]), "bound_last": float(s["bound"][-1])}
        for s in result["settings"]
    ]}  # fmt: skip
    files.append(write_json(out / "summary.json", summary))
    files += plot(result, out / "output_variation")
    return files


def parse_args(argv: list[str]) -> argparse.Namespace:
    return cli.output_variation().parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    t0 = time.time()
    try:
        out = out_dir(args.out, f"runs/analyze/output-variation-{args.scale}")
        result = analyse(args)
        files = write_outputs(result, out)
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{result['env']}, {result['source']}: {result['episodes']} episodes x "
          f"{result['steps']} steps, policy loss {result['policy_loss']:.4g}")  # fmt: skip
    print(f"{'setting':<44} {'v_1':>9} {'v_late':>9} {'ampl':>6} {'eps':>9} {'Kh':>6} "
          f"{'Ky':>8} {'bound_T':>9} holds")  # fmt: skip
    for s in result["settings"]:
        print(f"{s['name']:<44} {s['v_first']:9.3g} {s['v_late']:9.3g} "
              f"{s['amplification']:6.2f} {s['eps']:9.3g} {s['Kh']:6.3f} {s['Ky']:8.3g} "
              f"{s['bound'][-1]:9.3g} {s['bound_holds']}")  # fmt: skip
    print(f"wrote {', '.join(str(f) for f in files)} ({time.time() - t0:.0f} s)")
    return 0
