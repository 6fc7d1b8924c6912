"""RESeL end to end on Pendulum-P (tiny sizes): learning lowers the critic loss, files, resume,
per-module optimizers, divergence handling and the CLI; and the update itself (learning rates per
module, Polyak step, policy delay, temperature), on the compiled trainer the full run built."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim4rl
from optim4rl.runtime.errors import UsageError
from resel import config as C
from resel import train
from resel.__main__ import config_from_args, main, parse_args
from resel.networks import NetConfig

NET = NetConfig(
    pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=2, ffn_dim=16,
    obs_embed=16, act_embed=16, hidden=32, n_critics=4,
)  # fmt: skip
CFG = C.Config(
    net=NET, total_steps=800, warmup_steps=200, batch_size=200, max_trajs_per_batch=4,
    eval_every=200, eval_episodes=2, checkpoint_every=200, buffer_size=1200,
)  # fmt: skip


@pytest.fixture(scope="module")
def pendulum():
    from resel import envs

    return envs.make("Pendulum-P")


@pytest.fixture(scope="module")
def full_run(pendulum, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    rows = train.run(CFG, "Pendulum-P", [0, 1], out, progress=False, env=pendulum)
    return out, rows


def test_training_lowers_critic_loss_and_writes_run_files(full_run):
    out, rows = full_run
    assert [r["step"] for r in rows] == [400, 400, 600, 600, 800, 800]
    for seed in (0, 1):
        mine = [r for r in rows if r["seed"] == seed]
        # Pendulum returns start near -1200; the critic's TD error falls as Q fits the rewards
        assert mine[-1]["critic_loss"] < 0.5 * mine[0]["critic_loss"]
        assert all(np.isfinite(r["eval_return"]) and -2000 < r["eval_return"] < 0 for r in mine)
        assert not any("eval_success" in r for r in mine)  # Pendulum reports no success
        assert mine[-1]["alpha"] < 1.0  # temperature tuned towards the target entropy
    r = rows[-1]
    for k in ("policy/grad_norm/context_encoder", "critic/grad_norm/head", "policy_loss"):
        assert np.isfinite(r[k]), k
    assert r["policy/grad_norm/context_encoder"] > 0
    assert r["batch_transitions"] == 200  # one whole 200-step trajectory per batch
    logged = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == rows
    meta = json.loads((out / "config.json").read_text())
    assert C.from_dict(meta["config"]) == CFG and meta["seeds"] == [0, 1]
    assert (out / train.CHECKPOINT).exists()


@pytest.fixture(scope="module")
def trained(full_run, pendulum):
    """The compiled trainer of the full run (cached) and its final state, from the checkpoint."""
    out, _ = full_run
    trainer = train._trainer(CFG, "Pendulum-P", *pendulum)
    template = trainer.init(jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]))
    state, _ = train.load_checkpoint(out / train.CHECKPOINT, template, CFG, [0, 1])
    return trainer, state


def _counts(opt_state) -> set[int]:
    """Step counts of every Adam state inside a (per-module) optimizer state."""
    leaves = jax.tree_util.tree_leaves_with_path(opt_state)
    return {int(np.asarray(v).reshape(-1)[0]) for path, v in leaves if "count" in str(path[-1])}


def test_policy_is_updated_every_second_critic_update(trained):
    _, state = trained
    updates = (CFG.total_steps - CFG.warmup_steps) // CFG.env_steps_per_update
    assert np.asarray(state.updates).tolist() == [updates, updates]  # one per env step
    assert _counts(state.agent.critic_opt) == {updates}
    assert _counts(state.agent.policy_opt) == {updates // CFG.policy_every}
    assert _counts(state.agent.alpha_opt) == {updates // CFG.policy_every}


def _fresh_update(trained, **agent_fields):
    """One critic + policy update of seed 0 from the trained state with fresh optimizer states."""
    trainer, state = trained
    agent = jax.tree.map(lambda x: x[0], state.agent)
    buf = jax.tree.map(lambda x: x[0], state.buffer)
    agent = agent._replace(
        policy_opt=train.build_optimizer(CFG.policy_optim, "mamba").init(agent.policy),
        critic_opt=train.build_optimizer(CFG.critic_optim, "mamba").init(agent.critic),
        alpha_opt=optim4rl.from_spec(CFG.alpha_optim).init(agent.log_alpha),
        **agent_fields,
    )
    new, metrics = trainer.update(agent, buf, jax.random.PRNGKey(3))
    return agent, new, metrics


def _max_step(before, after, module: str, inside: bool) -> float:
    deltas = [
        float(jnp.max(jnp.abs(a - b)))
        for (path, b), a in zip(
            jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after), strict=True
        )
        if (module in jax.tree_util.keystr(path)) == inside
    ]
    return max(deltas)


def test_context_encoder_gets_the_smaller_learning_rate_inside_the_update(trained):
    """Adam's first step moves each parameter by lr * g / (|g| + eps), so the largest change in a
    module is its learning rate: 1e-5 in both context encoders, 3e-4 / 1e-3 elsewhere."""
    before, after, _ = _fresh_update(trained)
    for net, lr_other in (("policy", 3e-4), ("critic", 1e-3)):
        b, a = getattr(before, net), getattr(after, net)
        # (float32: a parameter near 1 resolves steps of 1e-5 to about 1%)
        assert _max_step(b, a, "context_encoder", True) == pytest.approx(1e-5, rel=2e-2), net
        for part in ("in_proj", "mamba_0", "out_proj"):  # the whole encoder is the low-lr group
            assert _max_step(b, a, f"context_encoder']['{part}", True) == pytest.approx(
                1e-5, rel=1e-2
            )
        assert _max_step(b, a, "context_encoder", False) == pytest.approx(lr_other, rel=2e-2), net


def test_polyak_step_moves_the_target_by_tau_towards_the_new_critic(trained):
    _, state = trained
    target = jax.tree.map(lambda x: 0.5 * x[0], state.agent.target)  # far from the critic
    before, after, _ = _fresh_update(trained, target=target)
    for t0, q1, t1 in zip(*(jax.tree.leaves(x) for x in (target, after.critic, after.target)),
                          strict=True):  # fmt: skip
        np.testing.assert_allclose(t1, (1 - CFG.tau) * t0 + CFG.tau * q1, rtol=1e-5, atol=1e-7)


def test_temperature_moves_towards_the_target_entropy_and_is_capped(trained):
    """Adam's first step moves log alpha by at most lr = 1e-4, down while the policy's entropy is
    above the target -|A| = -1 and up while below; a log alpha above the release's cap of 1 is
    clamped to it."""
    _, after, m = _fresh_update(trained, log_alpha=jnp.asarray(0.0))
    moved, entropy = float(after.log_alpha), float(m["entropy"])
    assert moved != 0.0 and abs(moved) <= 1e-4 * (1 + 1e-6)
    assert np.sign(moved) == -np.sign(entropy - (-1.0))
    _, after, _ = _fresh_update(trained, log_alpha=jnp.asarray(3.0))
    assert float(after.log_alpha) == 1.0
    lo, hi = np.asarray(after.q_bounds)  # the guard's range holds 0 (padding) and the targets
    assert lo < 0.0 <= hi


def test_evaluation_runs_on_the_evaluation_params(trained, pendulum):
    """`eval_params` (a held-out task set) drive `evaluate`: here a 1-step horizon."""
    trainer, state = trained
    env, params = pendulum
    short = make_train_eval(env, params, params.replace(max_steps_in_episode=1))
    keys = jnp.stack([jax.random.PRNGKey(5)] * 2)
    full, one = trainer.evaluate(state, keys), short.evaluate(state, keys)
    full, one = np.asarray(full["return"]), np.asarray(one["return"])
    assert (full < -100).all()  # 200 steps of pendulum costs
    assert ((one <= 0) & (one > -17)).all()  # one step: -(theta^2 + 0.1 theta_dot^2 + ...) > -17


def test_evaluation_success_is_the_success_at_the_episode_end(trained, pendulum):
    """`evaluate`'s "success" is the mean over episodes of `info["success"]` on each episode's
    last step (not at any step); NaN for an env without `info["success"]`."""
    from resel.envs.core import Wrapper

    class SucceedsAt(Wrapper):  # info["success"] only on the step that reaches time `at`
        def __init__(self, env, at):
            super().__init__(env)
            self.at = at

        def step_env(self, key, state, action, params):
            obs, state, reward, terminated, info = self.env.step_env(key, state, action, params)
            return obs, state, reward, terminated, {**info, "success": state.time == self.at}

    trainer, state = trained
    env, params = pendulum
    params = params.replace(max_steps_in_episode=5)
    keys = jnp.stack([jax.random.PRNGKey(5)] * 2)
    assert np.isnan(np.asarray(trainer.evaluate(state, keys)["success"])).all()
    for at, expected in ((3, 0.0), (5, 1.0)):  # mid-episode: not a success; the last step: one
        ev = train.make_train(CFG, SucceedsAt(env, at), params).evaluate(state, keys)
        np.testing.assert_array_equal(np.asarray(ev["success"]), [expected] * 2)


def make_train_eval(env, params, eval_params):
    return train.make_train(CFG, env, params, eval_params)


def test_gravity_tasks_are_evaluated_on_the_held_out_gravities():
    from resel.envs.gravity import gravity_split

    held_out = train.heldout_params("Hopper-Gravity")
    np.testing.assert_array_equal(held_out.gravity_scales, gravity_split("test"))
    assert not set(gravity_split("train").tolist()) & set(gravity_split("test").tolist())
    assert train.heldout_params("Pendulum-P") is None


def test_a_diverging_seed_is_frozen_and_the_other_finishes(trained, pendulum, tmp_path):
    """Resume the full run from a checkpoint whose seed 1 has a NaN in its critic: seed 1 is frozen
    at its state, seed 0 trains to the end, and the run reports seed 1 as diverged."""
    _, state = trained
    nan_critic = jax.tree.map(lambda x: x.at[1].set(jnp.nan), state.agent.critic)
    poisoned = state._replace(agent=state.agent._replace(critic=nan_critic))
    train.save_checkpoint(tmp_path / train.CHECKPOINT, poisoned, CFG, [0, 1])
    longer = dataclasses.replace(CFG, total_steps=1000)
    with pytest.raises(train.TrainingDiverged, match="seed 1") as err:
        train.run(longer, "Pendulum-P", [0, 1], tmp_path, resume=True, progress=False,
                  env=pendulum)  # fmt: skip
    assert err.value.seeds == [1]
    assert [(r["step"], r["seed"]) for r in err.value.rows] == [(1000, 0)]
    events = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["seed"] for e in events if e.get("event") == "diverged"] == [1]
    header = json.loads(train.read_header(tmp_path / train.CHECKPOINT))
    assert header["diverged"] == [1] and header["step"] == 1000
    frozen, _ = train.load_checkpoint(tmp_path / train.CHECKPOINT, state, longer, [0, 1])
    np.testing.assert_array_equal(frozen.step, [1000, 800])  # seed 1 kept its pre-chunk state
    np.testing.assert_array_equal(frozen.agent.log_alpha[1], state.agent.log_alpha[1])


def test_resume_continues_exactly(full_run, pendulum, tmp_path):
    _, rows = full_run
    short = dataclasses.replace(CFG, total_steps=400)
    train.run(short, "Pendulum-P", [0, 1], tmp_path, progress=False, env=pendulum)
    resumed = train.run(CFG, "Pendulum-P", [0, 1], tmp_path, resume=True, progress=False,
                        env=pendulum)  # fmt: skip
    assert [r["step"] for r in resumed] == [r["step"] for r in rows]
    for a, b in zip(resumed, rows, strict=True):
        for k in ("eval_return", "critic_loss", "alpha"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), (k, a["step"])
    with pytest.raises(UsageError, match="another config: config.gamma: 0.99 .saved. vs 0.5"):
        train.run(dataclasses.replace(CFG, gamma=0.5), "Pendulum-P", [0, 1], tmp_path,
                  resume=True, progress=False, env=pendulum)  # fmt: skip


def test_a_default_replay_ring_run_resumes_exactly(pendulum, tmp_path):
    """The replay ring sized from the config (buffer_size None, the presets' default): a run
    stopped after its checkpoint at 400 steps and resumed, twice, gives the uninterrupted run's
    numbers (the ring is capped by max_transitions, so every run here has the same one)."""
    cfg = dataclasses.replace(CFG, buffer_size=None, max_transitions=300, total_steps=600)
    full = train.run(cfg, "Pendulum-P", [0], tmp_path / "full", progress=False, env=pendulum)
    part = tmp_path / "part"
    short = dataclasses.replace(cfg, total_steps=400)
    train.run(short, "Pendulum-P", [0], part, progress=False, env=pendulum)
    train.run(short, "Pendulum-P", [0], part, resume=True, progress=False, env=pendulum)
    resumed = train.run(cfg, "Pendulum-P", [0], part, resume=True, progress=False, env=pendulum)
    assert [r["step"] for r in resumed] == [r["step"] for r in full] == [400, 600]
    for a, b in zip(resumed, full, strict=True):
        for k in ("eval_return", "critic_loss", "alpha"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-4), (k, a["step"])


def test_cli_optim_patterns_and_divergence_is_reported(tmp_path, capsys):
    args = parse_args(["--env", "Pendulum-P", "--preset", "paper", "--lr-ce", "3e-4",
                       "--optim", "policy.head=sgd(learning_rate=0.1)", "--optim",
                       "alpha=adam(learning_rate=3e-4)"])  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.batch_size == 1999  # the release's classic POMDP batch (Table 2: 2000)
    assert cfg.policy_optim[0] == ("head", "sgd(learning_rate=0.1)")  # new patterns go first
    assert dict(cfg.critic_optim)["context_encoder"] == C.adamw(3e-4)
    assert cfg.alpha_optim == "adam(learning_rate=3e-4)"
    with pytest.raises(ValueError, match="target must be"):
        config_from_args(parse_args(["--env", "X", "--optim", "value.head=sgd(1.0)"]))
    # a huge critic learning rate blows the loss up: exit code 3, the event in metrics.jsonl
    code = main([
        "--env", "Pendulum-P", "--preset", "cpu", "--steps", "2000", "--warmup", "200",
        "--eval-every", "200", "--batch-size", "200", "--encoder", "none",
        "--optim", "critic.default=sgd(learning_rate=1e12)", "--out", str(tmp_path),
        "--no-progress",
    ])  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite critic loss at env step" in err
    events = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "diverged"
    assert main(["--env", "Pendulum-Q", "--steps", "10"]) == 2  # unknown task: clear error
    assert "unknown task 'Pendulum-Q'" in capsys.readouterr().err


def test_plot_draws_the_logged_curves(full_run):
    """The return panel holds each seed's logged evaluation returns and their mean; no success
    panel for a task without one; the PNG and PDF are written."""
    from resel.plot import curves_figure, load_metrics, plot_run

    out, rows = full_run
    assert load_metrics(out) == rows
    fig = curves_figure(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "evaluation return" and "evaluation success rate" not in titles
    lines = fig.axes[0].lines
    for seed, line in zip((0, 1), lines, strict=False):
        mine = [r for r in rows if r["seed"] == seed]
        np.testing.assert_array_equal(line.get_xdata(), [r["step"] for r in mine])
        np.testing.assert_array_equal(line.get_ydata(), [r["eval_return"] for r in mine])
    by_step = [np.mean([r["eval_return"] for r in rows if r["step"] == s]) for s in (400, 600, 800)]
    np.testing.assert_allclose(lines[-1].get_ydata(), by_step)
    paths = plot_run(out)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_discrete_task_trains_with_fixed_alpha_and_full_batches(tmp_path):
    from resel import envs

    env = envs.make("CartPole-P")
    cfg = dataclasses.replace(CFG, total_steps=600, batch_size=100, max_trajs_per_batch=4)
    assert cfg.discrete_alpha == 0.2  # the release's fixed temperature, the default
    rows = train.run(cfg, "CartPole-P", [0], tmp_path, progress=False, env=env)
    assert [r["step"] for r in rows] == [400, 600]
    for r in rows:
        assert r["alpha"] == pytest.approx(0.2)  # categorical policy: temperature fixed
        assert np.isfinite(r["critic_loss"]) and np.isfinite(r["policy_loss"])
        assert r["eval_return"] >= 1.0  # CartPole pays +1 per step survived
        # short random episodes (~20 steps): 4 trajectories are too few for 100 transitions, so
        # the loop grew the layout and redid the chunk; no batch came out short
        assert r["batch_transitions"] >= 100 and r["batch_short"] == 0.0
    header = json.loads(train.read_header(tmp_path / train.CHECKPOINT))
    assert header["layout"]["max_trajs_per_batch"] > 4


def test_key_to_door_logs_the_success_rate_beside_the_return(tmp_path):
    """Key-to-Door reports info["success"]: every evaluation row carries `eval_success`, the
    success rate of the evaluation episodes (2 here), also in metrics.jsonl."""
    from resel import envs

    env = envs.make("KeyToDoor-60")
    cfg = dataclasses.replace(CFG, total_steps=400, batch_size=85, max_trajs_per_batch=2)
    rows = train.run(cfg, "KeyToDoor-60", [0], tmp_path, progress=False, env=env)
    assert [r["step"] for r in rows] == [400]
    logged = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == rows
    for r in rows:
        assert r["eval_success"] in (0.0, 0.5, 1.0)
        assert r["eval_return"] >= 5.0 * r["eval_success"]  # an opened door pays 5
    from resel.plot import curves_figure

    ax = curves_figure(rows).axes[1]  # the success panel, beside the return
    assert ax.get_title() == "evaluation success rate"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [r["eval_success"] for r in rows])


def test_encoder_none_drops_exactly_the_encoder_patterns():
    specs = (("context_encoder", "sgd(0.1)"), ("pre_encoder", "sgd(0.2)"),
             ("context_encoder/Dense_0", "sgd(0.3)"), ("default", "sgd(1.0)"))  # fmt: skip
    assert C.active_module_optims(specs, "gru") == specs
    kept = C.active_module_optims(specs, "none")
    assert kept == (("context_encoder/Dense_0", "sgd(0.3)"), ("default", "sgd(1.0)"))
    with pytest.raises(ValueError, match="given more than once"):  # optim4rl.SpecError
        C.Config(policy_optim=(("head", "sgd(1)"), ("head", "sgd(2)")))


def _lrs(cfg) -> tuple[float, float, float, float]:
    """(policy CE, critic CE, policy, critic) learning rates of a config."""
    lr = {
        (net, p): optim4rl.specs.parse_spec(spec)[2]["learning_rate"]
        for net in ("policy_optim", "critic_optim")
        for p, spec in getattr(cfg, net)
    }
    return (lr["policy_optim", "context_encoder"], lr["critic_optim", "context_encoder"],
            lr["policy_optim", "default"], lr["critic_optim", "default"])  # fmt: skip


# The release's launch scripts (FanmingL/Recurrent-Offpolicy-RL, gen_tmuxp_mamba_*.py), written
# out here by hand: task -> (CE lr, policy lr, critic lr, batch, env steps = 5,000 random steps +
# iterations x 1,000, target entropy (None: -|A|)).
RELEASE = {
    # gen_tmuxp_mamba_pomdp.py: 1500 iterations, batch 1999; AntBLT-V and WalkerBLT-P exceptions
    "Hopper-P": (1e-5, 3e-4, 1e-3, 1999, 1_505_000, None),
    "Ant-V": (1e-5, 5e-4, 5e-4, 128, 1_505_000, None),
    "Walker2d-P": (5e-6, 3e-4, 1e-3, 1999, 1_505_000, None),
    # gen_tmuxp_mamba_dynamics_rnd.py: 2000 iterations, batch 999, Hopper's target entropy 0
    "Hopper-Gravity": (2e-6, 6e-5, 2e-4, 999, 2_005_000, 0.0),
    "Humanoid-Gravity": (2e-6, 6e-5, 2e-4, 999, 2_005_000, None),
    # gen_tmuxp_mamba_mujoco.py: 5000 iterations, batch 1999, Hopper TE 0, HalfCheetah lrs x5
    "Hopper": (2e-6, 6e-5, 2e-4, 1999, 5_005_000, 0.0),
    "Walker2d": (2e-6, 6e-5, 2e-4, 1999, 5_005_000, None),
    "HalfCheetah": (1e-5, 3e-4, 1e-3, 1999, 5_005_000, None),
    # gen_tmuxp_mamba_meta.py: 5000 iterations, batch 999, reward as input
    "AntDir": (2e-6, 6e-5, 2e-4, 999, 5_005_000, None),
    "Wind": (2e-6, 6e-5, 2e-4, 999, 5_005_000, None),
}


@pytest.mark.parametrize("env", sorted(RELEASE))
def test_paper_preset_is_the_releases_launch_script(env):
    ce, pol, crit, batch, steps, entropy = RELEASE[env]
    cfg = C.preset("paper", env)
    assert _lrs(cfg) == pytest.approx((ce, ce, pol, crit))
    assert (cfg.batch_size, cfg.total_steps, cfg.target_entropy) == (batch, steps, entropy)
    assert cfg.use_reward == (env in ("AntDir", "Wind"))
    # shared by every script (sac_tau 0.995 is tau 0.005 here), and the temperature's optimizer:
    # torch.optim.AdamW(lr=alpha_lr=1e-4) with torch's default weight decay 0.01
    assert (cfg.gamma, cfg.tau, cfg.warmup_steps, cfg.policy_every) == (0.99, 0.005, 5000, 2)
    alpha_tx = ("adamw", (), {"learning_rate": 1e-4, "weight_decay": 0.01})
    assert optim4rl.specs.parse_spec(cfg.alpha_optim) == alpha_tx
    assert cfg.net.norm_eps == 1e-8 and cfg.net.conv_kernel == 8 and cfg.net.n_blocks == 1


@pytest.mark.parametrize("length", [60, 120, 250, 500])
def test_key_to_door_preset_is_the_papers(length):
    """Paper App. D.3.2 / Table 2: no conv1d, a 3-layer 256-unit MLP before the Mamba block, 4
    blocks at length 500 (else 1), gamma 0.9999; discrete actions: the release's fixed alpha 0.2."""
    for name in ("paper", "cpu"):
        cfg = C.preset(name, f"KeyToDoor-{length}")
        net = cfg.net
        assert (net.conv_kernel, net.ce_in_layers, net.n_blocks) == (
            0,
            3,
            4 if length == 500 else 1,
        )
        assert (cfg.gamma, cfg.discrete_alpha) == (0.9999, 0.2)
    assert C.preset("paper", "KeyToDoor-60").net.ce_dim == 256
    assert _lrs(C.preset("paper", "KeyToDoor-60")) == pytest.approx((1e-5, 1e-5, 3e-4, 1e-3))


# the cpu preset's learning rates, written out: 10x the paper's context-encoder lr on the classic
# POMDPs (CE / policy = 1/3 at Pendulum, not the method's 1/30), the paper's elsewhere
CPU_LRS = {
    "Pendulum-V": (1e-4, 1e-4, 3e-4, 1e-3),
    "Walker2d-P": (5e-5, 5e-5, 3e-4, 1e-3),
    "Ant-V": (1e-4, 1e-4, 5e-4, 5e-4),
    "AntDir": (2e-6, 2e-6, 6e-5, 2e-4),
    "Hopper-Gravity": (2e-6, 2e-6, 6e-5, 2e-4),
}


def test_cpu_preset_learning_rates_and_update_ratio():
    for env, lrs in CPU_LRS.items():
        cfg = C.preset("cpu", env)
        assert _lrs(cfg) == pytest.approx(lrs), env
        assert (cfg.total_steps, cfg.warmup_steps, cfg.batch_size, cfg.max_trajs_per_batch,
                cfg.checkpoint_every) == (50_000, 2_000, 400, 16, 5_000)  # fmt: skip
        net = cfg.net
        assert (net.pre_dim, net.ce_dim, net.ce_out, net.d_state, net.dt_rank, net.conv_kernel,
                net.ffn_dim, net.hidden, net.n_critics) == (32, 64, 32, 8, 4, 4, 64, 64, 8)  # fmt: skip
    # the update ratio: the paper's 1:1 on Pendulum-V (CPU_TASK_OVERRIDES), 1:2 elsewhere
    assert C.preset("cpu", "Pendulum-V").env_steps_per_update == 1
    assert C.preset("cpu", "Pendulum-P").env_steps_per_update == 2
    assert C.preset("cpu", "Pendulum-V", env_steps_per_update=2).env_steps_per_update == 2
    override = C.preset("cpu", "Pendulum-V", policy_optim=C.module_optims(1e-5, 3e-4))
    assert _lrs(override)[0] == pytest.approx(1e-5)  # an explicit override wins


@pytest.mark.parametrize("random_state", [True, False])
def test_training_episodes_start_the_policy_state_at_uniform_noise(pendulum, random_state):
    """The release's make_rnd_init_state: every training episode (the first, and each after a
    done; here Pendulum's 200-step episode ends on the warm-up's last step) starts the policy's
    Mamba carry (conv buffer, SSM state) at fresh U[-1, 1] draws, with the start flag off so the
    network keeps them; off, the carry is zero and the start flag zeroes it."""
    env, params = pendulum
    cfg = dataclasses.replace(CFG, random_initial_state=random_state)
    trainer = train.make_train(cfg, env, params)
    first = trainer.init(jnp.stack([jax.random.PRNGKey(0)] * 2))
    second = trainer.warmup(first)  # 200 random-action steps: the carry is drawn again at done
    assert int(second.actor.ep_len[0]) == 0  # a new episode starts
    for state in (first, second):
        leaves = jax.tree.leaves(state.actor.carry)
        x = np.concatenate([np.asarray(v).ravel() for v in leaves])
        np.testing.assert_array_equal(np.asarray(state.actor.start), 0.0 if random_state else 1.0)
        if not random_state:
            assert not x.any()
            continue
        assert x.size > 200 and x.min() >= -1.0 and x.max() <= 1.0
        assert abs(x.mean()) < 0.15 and abs(x.std() - 1 / np.sqrt(3)) < 0.08  # U[-1, 1]
    if random_state:
        a, b = (np.asarray(jax.tree.leaves(s.actor.carry)[-1]) for s in (first, second))
        assert not np.allclose(a, b)


def test_run_evaluates_on_the_held_out_tasks_of_its_seeds_split():
    """By default `run` trains on the training tasks and evaluates on the held-out ones, both of
    the split its (first) seed draws, the release's rule; config.json says so."""
    from resel.envs import task_sets

    cfg = dataclasses.replace(CFG, total_steps=400, eval_every=200, checkpoint_every=10_000)
    train._TRAINERS.clear()
    with tempfile.TemporaryDirectory() as out:
        train.run(cfg, "Wind", [3], out, progress=False)
        meta = json.loads((Path(out) / "config.json").read_text())
    assert meta["eval_tasks"] == "held-out"
    (trainer,) = train._TRAINERS.values()
    np.testing.assert_array_equal(trainer.eval_params.winds, task_sets.winds("test", 3))
    np.testing.assert_array_equal(trainer.env.default_params.winds, task_sets.winds("train", 3))
