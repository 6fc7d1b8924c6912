"""RESeL end to end on Pendulum-P (tiny sizes): learning lowers the critic loss, files, resume,
per-module optimizers, divergence handling and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

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
    with pytest.raises(ValueError, match="different config"):
        train.run(dataclasses.replace(CFG, gamma=0.5), "Pendulum-P", [0, 1], tmp_path,
                  resume=True, progress=False, env=pendulum)  # fmt: skip


def test_cli_optim_patterns_and_divergence_is_reported(tmp_path, capsys):
    args = parse_args(["--env", "Pendulum-P", "--preset", "paper", "--lr-ce", "3e-4",
                       "--optim", "policy.head=sgd(learning_rate=0.1)", "--optim",
                       "alpha=adam(learning_rate=3e-4)"])  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.batch_size == 2000  # classic POMDP column of Table 2
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


def test_plot_writes_png_and_pdf(full_run):
    from resel.plot import load_metrics, plot_run

    out, rows = full_run
    assert load_metrics(out) == rows
    paths = plot_run(out)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_discrete_task_trains_with_fixed_alpha(tmp_path):
    from resel import envs

    env = envs.make("CartPole-P")
    cfg = dataclasses.replace(
        CFG, total_steps=600, batch_size=100, max_trajs_per_batch=16, init_alpha=0.2
    )
    rows = train.run(cfg, "CartPole-P", [0], tmp_path, progress=False, env=env)
    assert [r["step"] for r in rows] == [400, 600, 800][: len(rows)] and len(rows) == 2
    for r in rows:
        assert r["alpha"] == pytest.approx(0.2)  # categorical policy: temperature fixed
        assert np.isfinite(r["critic_loss"]) and np.isfinite(r["policy_loss"])
        assert r["eval_return"] >= 1.0  # CartPole pays +1 per step survived
        # short random episodes: several whole trajectories per batch, until >= 100 steps
        assert r["batch_transitions"] >= 100 or r["batch_dropped"] > 0


def test_encoder_none_drops_exactly_the_encoder_patterns():
    specs = (("context_encoder", "sgd(0.1)"), ("pre_encoder", "sgd(0.2)"),
             ("context_encoder/Dense_0", "sgd(0.3)"), ("default", "sgd(1.0)"))  # fmt: skip
    assert C.active_module_optims(specs, "gru") == specs
    kept = C.active_module_optims(specs, "none")
    assert kept == (("context_encoder/Dense_0", "sgd(0.3)"), ("default", "sgd(1.0)"))
    with pytest.raises(ValueError, match="given more than once"):  # optim4rl.SpecError
        C.Config(policy_optim=(("head", "sgd(1)"), ("head", "sgd(2)")))
