"""Study files: parsing, sweeps, and errors that name file, line and key before anything runs."""

from __future__ import annotations

import json
import re
import textwrap

import numpy as np
import pytest

import optim4rl
from eval.study import StudyError, key_lines, load_study, shipped_studies

GOOD = """\
[study]
name = "demo"
algorithm = "ppo"
tasks = ["inverted_pendulum", "hopper"]
num_evals = 5

[scale.cpu]
preset = "cpu"
seeds = 3
budget = 10_000
config = { num_envs = 32, batch_size = 32 }
tuning_seeds = 2

[scale.paper]
preset = "paper"
seeds = [1, 5]
budget = 100_000_000
tasks = ["ant"]
tuning_seeds = [5000, 5001]

[optimizers.adam]
spec = "adam(learning_rate={lr})"
sweep = { lr = [1e-4, 1e-3] }

[optimizers.per_module]
spec = { policy = "adam(learning_rate=3e-4)", default = "optim4rl(learning_rate=3e-4, seed=0)" }
"""


def write(tmp_path, text: str, name: str = "s.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_good_study_both_scales(tmp_path):
    path = write(tmp_path, GOOD)
    study = load_study(path, "cpu")
    assert study.tasks == ("inverted_pendulum", "hopper")
    assert study.seeds == (0, 1, 2)
    assert study.budget == 10_000 and study.config == {"num_envs": 32, "batch_size": 32}
    names = [v.name for v in study.variants]
    assert names == ["adam[lr=0.0001]", "adam[lr=0.001]", "per_module"]
    assert study.variants[1].spec == "adam(learning_rate=0.001)"
    assert study.variants[1].values == {"lr": 1e-3} and study.variants[1].family == "adam"
    paper = load_study(path, "paper")
    assert paper.tasks == ("ant",) and paper.seeds == (1, 5) and paper.preset == "paper"


def test_key_lines():
    lines = key_lines(GOOD)
    assert lines["study.algorithm"] == 3
    assert lines["scale.cpu.config"] == 11
    assert lines["optimizers.per_module.spec"] == 26


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'algorithm = "ppo"',
            'algoritm = "ppo"',
            r"s.toml:3: key 'study.algoritm': unknown key; did you mean 'algorithm'",
        ),
        (
            'algorithm = "ppo"',
            'algorithm = "dqn"',
            r"s.toml:3: key 'study.algorithm': unknown algorithm 'dqn'",
        ),
        ('"hopper"]', '"hoper"]', r"s.toml:4: key 'study.tasks': unknown Brax env 'hoper'"),
        ("seeds = 3", "seeds = 0", r"s.toml:9: key 'scale.cpu.seeds': must be >= 1"),
        ("seeds = 3", "seeds = [1, 1]", r"s.toml:9: key 'scale.cpu.seeds': repeats a seed"),
        (
            "budget = 10_000",
            'budget = "lots"',
            r"s.toml:10: key 'scale.cpu.budget': must be an int",
        ),
        (
            "num_envs = 32,",
            "num_env = 32,",
            r"s.toml:11: key 'scale.cpu.config': unknown PPOConfig key\(s\) \['num_env'\]",
        ),
        (
            'preset = "cpu"',
            'preset = "gpu"',
            r"s.toml:8: key 'scale.cpu.preset': unknown PPO preset 'gpu'",
        ),
        ("{lr}", "{rate}", r"s.toml:23: key 'optimizers.adam.sweep': spec placeholders \['rate'\]"),
        (
            '"adam(learning_rate=3e-4)"',
            '"adamm(learning_rate=3e-4)"',
            r"s.toml:26: key 'optimizers.per_module.spec': SpecError: unknown optimizer 'adamm'",
        ),
        (
            "[optimizers.adam]",
            "[optimisers.adam]",
            r"s.toml:21: key 'optimisers': unknown key; did you mean 'optimizers'",
        ),
    ],
)
def test_errors_name_line_and_key(tmp_path, old, new, message):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(StudyError, match=message):
        load_study(path, "cpu")


def test_file_level_errors(tmp_path):
    with pytest.raises(StudyError, match="not valid TOML"):
        load_study(write(tmp_path, GOOD.replace("seeds = 3", "seeds = ")), "cpu")
    no_paper = GOOD[: GOOD.index("[scale.paper]")] + GOOD[GOOD.index("[optimizers.adam]") :]
    with pytest.raises(StudyError, match=r"key 'scale': has no \[scale.paper\] table"):
        load_study(write(tmp_path, no_paper), "paper")
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "missing.toml")
    with pytest.raises(StudyError, match="did you mean brax_generalization"):
        load_study("brax_generalisation")


@pytest.mark.parametrize("name", shipped_studies())
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_shipped_studies_validate(name, scale):
    """Every shipped study is valid at both scales: its optimizers build, so every pretrained
    checkpoint it names is shipped and loads."""
    study = load_study(name, scale)
    assert study.tasks and study.variants and study.seeds
    named = set(re.findall(r"pretrained='(\w+)'", json.dumps([v.spec for v in study.variants])))
    assert named <= set(optim4rl.pretrained_names())


def test_resel_specs_become_per_network_pairs():
    """RESeL adapter: one spec for both networks, or a {policy, critic} table; 'default' last."""
    pytest.importorskip("resel.config")
    from eval.algorithms import get_algorithm

    resel = get_algorithm("resel")
    both = resel.build_optimizer(
        {"default": "adam(learning_rate=1e-3)", "context_encoder": "sgd(0.1)"}
    )
    assert both["policy_optim"] == both["critic_optim"]
    assert both["policy_optim"] == (
        ("context_encoder", "sgd(0.1)"),
        ("default", "adam(learning_rate=1e-3)"),
    )
    split = resel.build_optimizer({"policy": "adam(learning_rate=3e-4)", "critic": "sgd(0.1)"})
    assert split == {
        "policy_optim": (("default", "adam(learning_rate=3e-4)"),),
        "critic_optim": (("default", "sgd(0.1)"),),
    }
    with pytest.raises(ValueError, match="lacks \\['critic'\\]"):
        resel.build_optimizer({"policy": "adam(learning_rate=3e-4)"})
    with pytest.raises(ValueError, match="needs a 'default'"):
        resel.build_optimizer({"context_encoder": "sgd(0.1)"})


def test_cli_reports_bad_study_before_running(tmp_path, capsys):
    from eval.__main__ import main

    path = write(tmp_path, GOOD.replace("seeds = 3", "seeds = -2"))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "key 'scale.cpu.seeds': must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no runs/ folder" in capsys.readouterr().err


def test_resel_cell_that_diverges_keeps_its_evaluations():
    """A real RESeL cell whose critic SGD blows up after a few evaluations: a diverged seed keeps
    the rows evaluated before the divergence, then ends with a non-finite row naming the cause;
    it is frozen, so a seed that stays finite finishes all its evaluations."""
    pytest.importorskip("resel.config")
    from eval.algorithms import get_algorithm
    from resel.networks import NetConfig

    net = NetConfig(
        pre_dim=8, ce_dim=16, ce_out=8, d_state=4, dt_rank=2, conv_kernel=2, ffn_dim=16,
        obs_embed=16, act_embed=16, hidden=32, n_critics=4,
    )  # fmt: skip
    resel = get_algorithm("resel")
    optimizer = resel.build_optimizer(
        {"policy": "adam(learning_rate=3e-4)", "critic": "sgd(learning_rate=0.01)"}
    )
    rows: dict[int, list[dict]] = {0: [], 1: []}
    resel.run_cell(
        task="Pendulum-P", preset="cpu", budget=1000, num_evals=5, optimizer=optimizer,
        overrides={"net": net, "warmup_steps": 200, "batch_size": 200, "max_trajs_per_batch": 4,
                   "eval_episodes": 2, "buffer_size": 1200},
        seeds=[0, 1], on_eval=lambda i, row: rows[i].append(row), desc="diverging",
    )  # fmt: skip
    diverged = [i for i in (0, 1) if rows[i][-1]["finite"] == 0.0]
    assert diverged
    for i in (0, 1):
        *before, last = rows[i]
        if i in diverged:
            assert "non-finite" in last["error"] and "frozen" in last["error"]
            assert before and all(r["finite"] == 1.0 and r["env_steps"] < 1000 for r in before)
        else:
            assert rows[i][-1]["env_steps"] == 1000 and all(r["finite"] == 1.0 for r in rows[i])


def test_driver_rows_become_study_rows_with_the_success_rate():
    """A driver row (RESeL's `eval_success` on Key-to-Door) reaches the study as "success",
    beside "return"; A2C's chunk "return" is kept; a frozen seed's row is non-finite."""
    from eval.algorithms import _study_row

    logged = {"step": 400, "seed": 0, "eval_return": 3.0, "eval_success": 0.5,
              "train_return": None, "critic_loss": 1.0}  # fmt: skip
    assert _study_row(logged) == {
        "critic_loss": 1.0, "env_steps": 400.0, "return": 3.0, "train_return": None,
        "success": 0.5, "finite": 1.0,
    }  # fmt: skip
    a2c = {"step": 60, "seed": 1, "return": 0.25, "episodes": 4.0}
    assert _study_row(a2c) == {"episodes": 4.0, "env_steps": 60.0, "return": 0.25, "finite": 1.0}
    frozen = _study_row({"step": 80, "seed": 1, "finite": False, "error": "non-finite"})
    assert frozen["finite"] == 0.0 and np.isnan(frozen["return"]) and frozen["error"]


def test_two_stage_keys(tmp_path):
    """tuning_seeds (an int counts from 1000), floor, reference and per-family config."""
    study = load_study(write(tmp_path, GOOD), "cpu")
    assert study.tuning_seeds == (1000, 1001) and study.swept() == ["adam"]
    # a sweep without tuning seeds gets as many as it has evaluation seeds, above all of them
    default = load_study(write(tmp_path, GOOD.replace("tuning_seeds = 2\n", "")), "cpu")
    assert default.tuning_seeds == (1000, 1001, 1002)
    high = GOOD.replace("tuning_seeds = 2\n", "").replace("seeds = 3", "seeds = [5, 1500]")
    assert load_study(write(tmp_path, high), "cpu").tuning_seeds == (1501, 1502)
    assert load_study(write(tmp_path, GOOD), "paper").tuning_seeds == (5000, 5001)
    assert study.floor is None and study.reference is None and study.last == 2  # PPO: last 2
    text = GOOD.replace("num_evals = 5", 'num_evals = 5\nfloor = "untrained"\nreference = "adam"')
    text += "[optimizers.per_module.config]\nnum_envs = 16\n"
    study = load_study(write(tmp_path, text), "cpu")
    assert (study.floor, study.reference) == ("untrained", "adam")
    assert study.variants[-1].config == {"num_envs": 16} and study.variants[0].config == {}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("tuning_seeds = 2", "tuning_seeds = [0, 7]", r"disjoint .* both hold \[0\]"),
        ("num_evals = 5", 'num_evals = 5\nfloor = "sgd"', r"key 'study.floor': names no family"),
        ("num_evals = 5", 'num_evals = 5\nfloor = "adam"', r"'adam' is swept; a floor has one"),
        ("num_evals = 5", 'num_evals = 5\nreference = "adam"', r"needs a floor"),
        (
            "num_evals = 5",
            'num_evals = 5\nfloor = "per_module"\nreference = "per_module"',
            r"key 'study.reference': must name a family other than the floor",
        ),
    ],
)
def test_two_stage_errors(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, GOOD.replace(old, new, 1)), "cpu")


def test_a2c_has_no_untrained_floor_and_family_config_is_checked(tmp_path):
    text = """\
    [study]
    name = "a"
    algorithm = "a2c"
    tasks = ["catch"]
    floor = "untrained"
    [scale.cpu]
    preset = "cpu"
    seeds = 2
    budget = 400
    [scale.paper]
    preset = "paper"
    seeds = 2
    budget = 400
    [optimizers.adam]
    spec = "adam(learning_rate=1e-3)"
    """
    with pytest.raises(StudyError, match="first evaluation is already trained"):
        load_study(write(tmp_path, text), "cpu")
    bad = text.replace('floor = "untrained"\n', "") + "    config = { reward_scal = 2.0 }\n"
    with pytest.raises(StudyError, match=r"optimizers.adam.config': unknown A2CConfig key"):
        load_study(write(tmp_path, bad), "cpu")


def test_gridworld_paper_scale_is_the_authors_protocol():
    """configs/a2c_grid.json of the release: 512 envs, 3e7 steps, clip 1, the six-value lr grid
    for Adam and RMSProp, 10 seeds; every learned family gets the same six candidates; only the
    shipped Optim4RL gets its meta-training reward scale."""
    study = load_study("gridworld_optimizers", "paper")
    assert study.config == {"num_envs": 512, "grad_clip": 1.0} and study.budget == 30_000_000
    assert len(study.seeds) == 10 and len(study.tuning_seeds) == 10
    assert not set(study.seeds) & set(study.tuning_seeds)
    grid = [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
    for family, variants in study.families().items():
        if family != "random":
            assert [v.values["lr"] for v in variants] == grid, family
        scaled = family == "optim4rl"
        assert all(("reward_scale" in v.config) == scaled for v in variants), family
    assert (study.floor, study.reference, study.score_key) == ("random", "adam", "score")
    quick = load_study("quickstart", "cpu")
    assert not set(quick.seeds) & set(quick.tuning_seeds) and quick.last == 2


def test_a2c_study_score_is_the_authors_last_20_logged_returns():
    """An a2c study cell's final score (the row field "score" at its last evaluation) equals the
    authors' analysis_grid.py score computed by hand from `make_train`'s per-update metrics: the
    mean of the last 20 logged returns, one per update in which an episode finished (the mean of
    those episodes' returns); each evaluation's "return" is the window's pooled mean."""
    import jax
    import optax

    from eval.algorithms import get_algorithm
    from meta_train.a2c import A2CConfig, make_train

    rows: dict[int, list] = {0: [], 1: []}
    get_algorithm("a2c").run_cell(
        task="catch", preset="cpu", overrides={"grad_clip": 1.0}, budget=3000, num_evals=3,
        optimizer=optax.adam(3e-3), seeds=[0, 1], on_eval=lambda i, r: rows[i].append(r), desc="",
    )  # fmt: skip
    train = make_train(A2CConfig(task="catch", num_updates=150, grad_clip=1.0), optax.adam(3e-3))
    for seed in (0, 1):
        _, m = train(jax.random.key(seed))
        total, count = np.asarray(m["episode_return_sum"]), np.asarray(m["episodes"])
        logged = [t / c for t, c in zip(total, count, strict=True) if c > 0]
        assert len(logged) > 20  # Catch episodes end every 9 steps: most updates log
        assert rows[seed][-1]["score"] == pytest.approx(np.mean(logged[-20:]), rel=1e-5)
        window = slice(100, 150)  # the last of 3 windows of 50 updates
        pooled = total[window].sum() / count[window].sum()
        assert rows[seed][-1]["return"] == pytest.approx(pooled, rel=1e-5)


def test_declared_claims(tmp_path):
    text = GOOD.replace("num_evals = 5", 'num_evals = 5\nclaims = [["per_module", "adam"]]')
    assert load_study(write(tmp_path, text), "cpu").claims == (("per_module", "adam"),)
    bad = GOOD.replace("num_evals = 5", 'num_evals = 5\nclaims = [["per_module", "sgd"]]')
    with pytest.raises(StudyError, match=r"key 'study.claims': \['per_module', 'sgd'\] is not"):
        load_study(write(tmp_path, bad), "cpu")
