"""RESeL's analyses (`python -m eval analyze output-variation | training-dynamics |
context-embedding`) on tiny real RESeL agents, a tiny real study and real run folders."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eval.analyze import context_embedding as ce
from eval.analyze import output_variation as ov
from eval.analyze import training_dynamics as td
from resel import config as C
from resel import train
from resel.networks import NetConfig, Policy, Seq

NET = NetConfig(
    pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=2, ffn_dim=16,
    obs_embed=16, act_embed=16, hidden=32, n_critics=4,
)  # fmt: skip
CFG = C.Config(
    net=NET, total_steps=600, warmup_steps=200, batch_size=200, max_trajs_per_batch=4,
    eval_every=200, eval_episodes=1, checkpoint_every=200, buffer_size=1200,
)  # fmt: skip
EPISODES, STEPS = 2, 24


@pytest.fixture(scope="module")
def pendulum():
    from resel import envs

    return envs.make("Pendulum-P")


@pytest.fixture(scope="module")
def resel_run(pendulum, tmp_path_factory):
    """A real `python -m resel`-style run folder: 2 seeds, 600 steps, checkpoint + metrics."""
    out = tmp_path_factory.mktemp("resel_run")
    train.run(CFG, "Pendulum-P", [0, 1], out, progress=False, env=pendulum)
    return out


@pytest.fixture(scope="module")
def agent(resel_run, pendulum):
    """Seed 0 of the run restored, its gradient on a buffer batch, and evaluation episodes."""
    run = ov.load_resel_run(resel_run, 0, env=pendulum)
    env, params = pendulum
    policy = run.trainer.policy
    seq, alive = ov.rollout(policy, run.state.agent.policy, env, params, jax.random.PRNGKey(3),
                            EPISODES, STEPS)  # fmt: skip
    grads, loss = ov.policy_gradient(run.trainer, run.state.agent, run.state.buffer,
                                     jax.random.PRNGKey(4))  # fmt: skip
    return run, policy, seq, alive, grads


def _setting(lr_ce, lr_other):
    return ov.settings_from([f"{lr_ce},{lr_other}"], [], 0.0)[0]


# ---------------------------------------------------------------------------------------------
# output-variation


def test_variation_equals_a_plain_python_loop_over_steps(agent):
    run, policy, seq, alive, grads = agent
    before = run.state.agent.policy
    after = ov.one_step(before, grads, _setting(1e-3, 1e-3))
    v, per_episode = ov.output_variation(policy, before, after, seq, alive)
    # by hand: the single-step method, one episode and one step at a time
    step = jax.jit(lambda p, x, c: policy.apply(p, x, c, method=policy.step))
    hand = np.zeros((EPISODES, STEPS))
    for i in range(EPISODES):
        c0 = policy.apply(before, 1, method=policy.initial_carry)
        c1 = policy.apply(after, 1, method=policy.initial_carry)
        for t in range(STEPS):
            x = Seq(*(f[i : i + 1, t] for f in seq))
            (m0, _), c0 = step(before, x, c0)
            (m1, _), c1 = step(after, x, c1)
            hand[i, t] = float(np.linalg.norm(np.tanh(m1) - np.tanh(m0)))
    np.testing.assert_allclose(per_episode, hand, rtol=1e-3, atol=2e-6)
    a = np.asarray(alive)
    np.testing.assert_allclose(v, (hand * a).sum(0) / a.sum(0), rtol=1e-3, atol=2e-6)
    q = ov.step_quantities(policy, before, after, seq)
    np.testing.assert_allclose(q["var"], hand, rtol=1e-3, atol=2e-6)
    assert v.max() > 0


def test_zero_learning_rates_change_nothing(agent):
    run, policy, seq, alive, grads = agent
    before = run.state.agent.policy
    after = ov.one_step(before, grads, _setting(0, 0))
    v, _ = ov.output_variation(policy, before, after, seq, alive)
    assert np.all(v == 0.0)
    const = ov.estimate_constants(ov.step_quantities(policy, before, after, seq), alive)
    assert const["eps"] == 0.0 and const["pairs"] == 0


def test_per_module_step_is_adam_sign_step_on_its_modules_only(agent):
    run, _, _, _, grads = agent
    before = run.state.agent.policy
    after = ov.one_step(before, grads, _setting(1e-3, 0))  # context encoder only
    for path, p0 in jax.tree_util.tree_leaves_with_path(before):
        name = jax.tree_util.keystr(path)
        p1 = after
        g = grads
        for k in path:
            p1, g = p1[k.key], g[k.key]
        delta = np.asarray(p1) - np.asarray(p0)
        if "context_encoder" in name:
            # Adam's first step from a fresh state: -lr * g / (|g| + eps) (bias corrections cancel)
            g = np.asarray(g)
            # (float32 rounding of p + update: 1e-6 is 0.1% of the step)
            np.testing.assert_allclose(delta, -1e-3 * g / (np.abs(g) + 1e-8), atol=1e-6)
            assert np.all(np.sign(delta) == -np.sign(g))
        else:
            assert np.all(delta == 0), name


def test_prop1_bound_holds_and_matches_the_closed_form(agent):
    run, policy, seq, alive, grads = agent
    before = run.state.agent.policy
    for lr_ce, lr_other in ((1e-3, 1e-3), (1e-5, 1e-3), (1e-3, 0.0)):
        after = ov.one_step(before, grads, _setting(lr_ce, lr_other))
        q = ov.step_quantities(policy, before, after, seq)
        k = ov.estimate_constants(q, alive)
        assert k["eps"] > 0 and k["pairs"] > 0
        bound = ov.prop1_bound(k["eps"], k["Kh"], k["Ky"], STEPS)
        a = np.asarray(alive) > 0
        # per episode, not only on average (float32 noise allowed)
        assert np.all(q["var"][a] <= np.broadcast_to(bound, a.shape)[a] * (1 + 1e-4) + 1e-6)
        # the proof's hidden-state recursion |h_{t+1} - h'_{t+1}| <= Kh |h_t - h'_t| + eps
        d = q["d_h"]
        assert np.all(d[:, 1:] <= k["Kh"] * d[:, :-1] + k["eps"] + 1e-5)
    t = np.arange(STEPS)
    kh, ky, eps = 0.9, 2.0, 0.01
    closed = ky * (1 - kh**t) / (1 - kh) * eps + eps
    np.testing.assert_allclose(ov.prop1_bound(eps, kh, ky, STEPS), closed, rtol=1e-10)
    np.testing.assert_allclose(ov.prop1_bound(eps, 1.0, ky, STEPS), ky * t * eps + eps)


def test_output_variation_cli_on_a_run_folder(resel_run, tmp_path, capsys):
    out = tmp_path / "ov"
    argv = ["--run", str(resel_run), "--episodes", "2", "--steps", "15", "--pairs", "0,0",
            "1e-3,1e-3", "--learned", "--out", str(out)]  # fmt: skip
    assert ov.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    zero, equal = summary["settings"]
    assert zero["v_max"] == 0.0 and equal["v_max"] > 0
    assert equal["bound_holds"] and summary["steps"] == 15
    rows = (out / "variation.csv").read_text().splitlines()
    assert len(rows) == 16 and rows[0].startswith("step,")
    assert float(rows[1].split(",")[2]) == pytest.approx(equal["v_first"], rel=1e-6)
    assert (out / "output_variation.png").exists() and (out / "output_variation.pdf").exists()
    assert ov.main(["--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert ov.main(["--run", str(tmp_path), "--out", str(tmp_path / "o2")]) == 2
    assert "not a RESeL run folder" in capsys.readouterr().err
    assert ov.main(["--pairs", "1e-5", "--out", str(tmp_path / "o3")]) == 2
    assert "LR_CE,LR_OTHER" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ov.main(["--steps", "0"])


# ---------------------------------------------------------------------------------------------
# training-dynamics

STUDY = """
[study]
name = "tiny_dynamics"
algorithm = "resel"
tasks = ["Pendulum-P"]
num_evals = 3

[scale.cpu]
preset = "cpu"
seeds = 2
budget = 600
config = { warmup_steps = 200, batch_size = 200, max_trajs_per_batch = 2, eval_episodes = 1 }

[scale.paper]
preset = "paper"
seeds = 1
budget = 1000

[optimizers.ce_lr]
spec = { context_encoder = "adamw(learning_rate=1e-5, weight_decay=0.0)", default = "adamw(learning_rate=3e-4, weight_decay=0.0)" }
"""


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A real study folder from eval.runner (tiny budget, 2 seeds)."""
    from eval.runner import run_study
    from eval.study import load_study

    folder = tmp_path_factory.mktemp("study")
    (folder / "tiny.toml").write_text(STUDY)
    run_study(load_study(folder / "tiny.toml", "cpu"), folder / "out", log=lambda *_: None)
    return folder / "out"


def _hand_stats(files: list[Path], metric: str) -> dict[float, tuple[float, float]]:
    """{env_steps: (mean, se)} over the runs, by hand from metrics.jsonl (statistics module)."""
    per_step: dict[float, list[float]] = {}
    for f in files:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            per_step.setdefault(float(r["env_steps"]), []).append(float(r[metric]))
    return {s: (statistics.mean(v), statistics.stdev(v) / math.sqrt(len(v)))
            for s, v in per_step.items()}  # fmt: skip


def _csv(out: Path) -> dict[tuple[str, str, float], tuple[int, float, float]]:
    rows = (out / "dynamics.csv").read_text().splitlines()[1:]
    table = {}
    for line in rows:
        task, variant, metric, step, n, mean, se = line.split(",")
        table[variant, metric, float(step)] = (int(n), float(mean), float(se))
    return table


def test_training_dynamics_of_a_study_equals_a_hand_computation(study_dir, tmp_path):
    out = tmp_path / "td"
    assert td.main([str(study_dir), "--out", str(out)]) == 0
    table = _csv(out)
    files = sorted(study_dir.glob("runs/Pendulum-P/ce_lr/seed*/metrics.jsonl"))
    assert len(files) == 2
    for metric in ("critic_loss", "policy/grad_norm/total", "critic/grad_norm/context_encoder",
                   "policy/grad_norm/head"):  # fmt: skip
        hand = _hand_stats(files, metric)
        assert hand
        for step, (mean, se) in hand.items():
            n, m, s = table["ce_lr", metric, step]
            assert n == 2
            assert m == pytest.approx(mean, rel=1e-6)
            assert s == pytest.approx(se, rel=1e-5, abs=1e-12)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["groups"][0]["seeds"] == [0, 1]
    for stem in ("dynamics_Pendulum-P", "modules_Pendulum-P"):
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.pdf").exists()


def test_training_dynamics_of_a_resel_run_folder(resel_run, tmp_path):
    out = tmp_path / "td"
    assert td.main([str(resel_run), "--out", str(out)]) == 0
    table = _csv(out)
    rows = [json.loads(s) for s in (resel_run / "metrics.jsonl").read_text().splitlines()]
    (variant,) = {k[0] for k in table}
    assert variant == "CE 1e-05 | policy 0.0003 | critic 0.001"
    for step in sorted({r["step"] for r in rows}):
        vals = [r["policy/grad_norm/context_encoder"] for r in rows if r["step"] == step]
        n, m, s = table[variant, "policy/grad_norm/context_encoder", float(step)]
        assert (n, m) == (2, pytest.approx(statistics.mean(vals), rel=1e-6))
        assert s == pytest.approx(statistics.stdev(vals) / math.sqrt(2), rel=1e-5)


def test_training_dynamics_errors_name_the_problem(study_dir, resel_run, tmp_path, capsys):
    assert td.main([str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert td.main([str(tmp_path)]) == 2
    assert "neither a study folder" in capsys.readouterr().err
    # a study whose metrics.jsonl predates the recorded metrics
    old = tmp_path / "old"
    shutil.copytree(study_dir, old)
    for f in old.glob("runs/*/*/*/metrics.jsonl"):
        rows = [json.loads(s) for s in f.read_text().splitlines()]
        keep = ("env_steps", "return", "train_return", "finite")
        f.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows))
    assert td.main([str(old), "--out", str(tmp_path / "o")]) == 2
    assert "lacks the metrics" in capsys.readouterr().err
    # a study of another algorithm
    ppo = tmp_path / "ppo"
    shutil.copytree(study_dir, ppo)
    for f in ppo.glob("runs/*/*/*/config.json"):
        f.write_text(json.dumps({**json.loads(f.read_text()), "algorithm": "ppo"}))
    assert td.main([str(ppo), "--out", str(tmp_path / "o")]) == 2
    assert "no finished RESeL runs; algorithms found: ppo" in capsys.readouterr().err
    assert td.main([str(resel_run), "--variants", "nothing-like-it"]) == 2
    assert "no variant matches" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# context-embedding


def test_linear_r2_against_numpy_lstsq():
    rng = np.random.default_rng(1)
    xa, xb = rng.normal(size=(200, 4)), rng.normal(size=(100, 4))
    w = np.array([1.0, -2.0, 0.5, 0.0])
    ya, yb = xa @ w + 0.3 + 0.1 * rng.normal(size=200), xb @ w + 0.3 + 0.1 * rng.normal(size=100)
    coef, *_ = np.linalg.lstsq(np.c_[xa, np.ones(200)], ya, rcond=None)
    pred = np.c_[xb, np.ones(100)] @ coef
    hand = 1 - np.sum((yb - pred) ** 2) / np.sum((yb - yb.mean()) ** 2)
    assert ce.linear_r2(xa, ya, xb, yb) == pytest.approx(hand, abs=1e-5)
    assert hand > 0.99
    noise = ce.linear_r2(xa, rng.normal(size=200), xb, rng.normal(size=100))
    assert noise < 0.1


def test_steps_since_start():
    start = np.array([[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]], float)
    assert ce.steps_since_start(start).tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]


def test_context_embedding_cli_errors(resel_run, tmp_path, capsys):
    assert ce.main(["--env", "Pendulum-P", "--out", str(tmp_path / "o")]) == 2
    assert "not a gravity task" in capsys.readouterr().err
    assert ce.main(["--run", str(resel_run), "--out", str(tmp_path / "o")]) == 2
    assert "trained on Pendulum-P, not a gravity task" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ce.main(["--episodes", "0"])


def test_gravity_rollouts_carry_their_gravity_and_embeddings():
    """The batched-params rollout on a real gravity task: each episode runs with its own gravity
    (a heavier world makes the hopper's torso fall faster) and embeddings have the CE's width."""
    from resel import envs

    env, params = envs.make("Hopper-Gravity", episode_length=8)
    obs_dim, act_dim = env.observation_space(params).shape[0], env.action_space(params).shape[0]
    policy = Policy(NET, False, act_dim)
    z = lambda d: jnp.zeros((1, 2, d))  # noqa: E731
    p = policy.init(jax.random.PRNGKey(0), Seq(z(obs_dim), z(obs_dim), z(act_dim), z(1),
                                               jnp.ones((1, 2))))  # fmt: skip
    batched, per = ce.gravity_params(params, np.array([0.3, 3.0], np.float32), 2)
    assert per.tolist() == pytest.approx([0.3, 0.3, 3.0, 3.0])
    keys = jnp.stack([jax.random.PRNGKey(5)] * 4)  # the same start state for all four
    seq, alive = ce.rollout(policy, p, env, batched, keys, 8, params_axis=0)
    z = np.asarray(seq.obs[:, :, 0])  # torso height
    np.testing.assert_allclose(z[0], z[1], atol=1e-6)  # same gravity, same key: same episode
    assert z[2, -1] < z[0, -1]  # 10x the gravity: lower after 8 steps
    emb = policy.apply(p, seq, method=policy.embed)
    assert emb.shape == (4, 8, NET.ce_out)


def test_training_dynamics_draws_a_diverged_run_up_to_its_divergence(study_dir, tmp_path):
    """A diverged run as eval's RESeL adapter leaves it (its evaluations, then a non-finite row,
    status "diverged"): drawn up to its last finite evaluation, and said so."""
    folder = tmp_path / "diverged"
    shutil.copytree(study_dir, folder)
    kept = None
    for run in folder.glob("runs/Pendulum-P/ce_lr/seed*"):
        rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()][:-1]
        kept = [r["env_steps"] for r in rows]
        bad = {"env_steps": float("nan"), "return": float("nan"), "finite": 0.0, "error": "boom"}
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, bad]))
        (run / "done.json").write_text(json.dumps({"status": "diverged"}))
    groups, notes = td.load_study(folder)
    (g,) = [g for g in groups if g.variant == "ce_lr"]
    assert kept and all([r["step"] for r in rows] == kept for rows in g.runs.values())
    assert sum(f"drawn up to step {kept[-1]:g}" in n for n in notes) == 2
