"""One dispatch style for `python -m optim4rl | meta_train | resel | eval` (optim4rl.runtime.cli),
and one command-line style: help text and defaults on every option, `--help` and option errors
without JAX, one-line errors with close matches, `--preset` everywhere, Ctrl-C as exit 130."""

import argparse
import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from optim4rl.runtime import cli
from optim4rl.runtime.errors import Interrupted, UsageError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optim4rl", "meta_train", "resel", "eval")
DISPATCHERS = {  # main(argv) of each dispatcher, and its commands
    "optim4rl.__main__": ("demo", "list"),
    "meta_train.__main__": ("train", "evaluate", "baselines"),
    "resel.__main__": ("train", "envs"),
    "eval.__main__": ("run", "report", "bench", "analyze"),
    "eval.bench": ("optimizer", "meta-train", "resel", "envs", "ppo", "scaling"),
    "eval.analyze": (
        "output-variation",
        "training-dynamics",
        "context-embedding",
        "grad-distribution",
    ),
}
# every leaf command as its argv prefix: (package, command) or (eval, bench|analyze, name)
COMMANDS = [
    (
        m.split(".")[0],
        *(["bench"] if m == "eval.bench" else ["analyze"] if m == "eval.analyze" else []),
        c,
    )
    for m, commands in DISPATCHERS.items()
    for c in commands
    if (m, c) not in (("eval.__main__", "bench"), ("eval.__main__", "analyze"))
]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def _main_of(package: str):
    return importlib.import_module(f"{package}.__main__").main


def _exit(capsys, package: str, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m package *argv` run in this process."""
    try:
        code = _main_of(package)(argv)
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("module", DISPATCHERS)
def test_every_dispatcher_behaves_the_same(module, capsys):
    main = importlib.import_module(module).main
    commands = DISPATCHERS[module]
    assert main([]) == 2  # no command: usage on stderr, exit 2, everywhere
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "error: " in err and all(c in err for c in commands)
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in commands)
    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines}
    assert set(commands) == set(listed) and all(len(doc) > 15 for doc in listed.values())
    typo = commands[0][:-1] + "x" + commands[0][-1]  # one letter inserted
    assert main([typo]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: unknown command {typo!r} (did you mean {commands[0]}")


def _add_argument_calls(path: Path):
    """(call, its help expression) of every add_argument, and of every add_preset_argument
    (whose help add_argument forwards)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        help_kw = next((k.value for k in node.keywords if k.arg == "help"), None)
        if name == "add_argument" and not isinstance(help_kw, ast.Name):
            yield node, help_kw
        elif name == "add_preset_argument":
            yield node, help_kw or (node.args[3] if len(node.args) > 3 else None)


def test_every_option_has_help_text():
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for call, help_kw in _add_argument_calls(path):
                text = help_kw.value if isinstance(help_kw, ast.Constant) else ""
                if isinstance(help_kw, ast.JoinedStr | ast.BinOp):
                    text = ast.unparse(help_kw)  # f-strings and concatenations
                if isinstance(help_kw, ast.Attribute) and help_kw.attr == "SUPPRESS":
                    text = "hidden alias"  # a deprecated spelling, not shown
                if len(str(text).split()) < 2:  # "m" is not help text
                    flag = ast.unparse(call.args[0]) if call.args else "?"
                    missing.append(f"{path.relative_to(ROOT)}:{call.lineno} {flag}")
    assert not missing, missing


# A fresh interpreter runs every command's `--help`, then `--nosuch`, as `python -m` does, and
# reports the exit code, whether JAX got imported, and what was printed.
PROBE = """
import contextlib, io, json, runpy, sys
argv = json.loads(sys.argv[1])
sys.argv = [argv[0], *argv[1:]]
out, err = io.StringIO(), io.StringIO()
try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    code = None
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "jax": "jax" in sys.modules, "out": out.getvalue(),
                  "err": err.getvalue()}))
"""


def _probe(argv: list[str]) -> dict:
    done = _run("-c", PROBE, json.dumps(argv))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("package", PACKAGES)
def test_package_help_loads_no_jax(package):
    got = _probe([package, "--help"])
    assert got["code"] == 0 and got["out"].startswith("usage: ")
    assert not got["jax"], f"python -m {package} --help imported jax"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_help_and_option_errors_load_no_jax(command):
    got = _probe([*command, "--help"])
    assert got["code"] == 0 and got["out"].startswith("usage: python -m "), got
    assert not got["jax"], f"python -m {' '.join(command)} --help imported jax"
    got = _probe([*command, "--nosuch"])
    assert got["code"] == 2
    assert got["err"].startswith("error: unrecognized arguments: --nosuch"), got["err"]
    assert not got["jax"], f"python -m {' '.join(command)} --nosuch imported jax"


def test_brax_import_prints_no_warp_notice():
    control = _run("-c", "import mujoco.mjx")  # the print itself, without the toolkit
    if "Failed to import warp" not in control.stdout + control.stderr:
        pytest.skip("warp is installed here: mujoco prints no notice to drop")
    for module in ("resel.envs", "eval.ppo"):  # the two packages that import brax
        done = _run("-c", f"import {module}; import brax.envs; print('imported')")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "imported\n", done.stdout  # other output is kept
        assert "Failed to import" not in done.stderr


def test_unknown_option_is_named_before_missing_ones(capsys):
    code, _, err = _exit(capsys, "resel", ["--nosuch"])  # --env is missing too
    assert code == 2
    assert err.startswith("error: unrecognized arguments: --nosuch")
    assert "required" not in err and len(err.splitlines()) == 1
    code, _, err = _exit(capsys, "resel", ["--env", "Pendulum-P", "--seeds", "1"])
    assert code == 2 and "unrecognized arguments: --seeds (did you mean --seed" in err
    code, _, err = _exit(capsys, "eval", ["run", "--workrs", "2"])  # study is missing too
    assert code == 2 and "unrecognized arguments: --workrs (did you mean --workers?)" in err
    code, _, err = _exit(capsys, "resel", ["--preset", "cpu"])  # alone: the missing option
    assert code == 2 and err.startswith("error: the following arguments are required: --env")


def test_demo_with_zero_steps_is_one_line_exit_2():
    done = _run("-m", "optim4rl", "demo", "--steps", "0", timeout=120)
    assert done.returncode == 2
    assert done.stderr == "error: argument --steps: '0' is not a positive integer\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "argv, message",
    [
        (["optim4rl", "demo", "--learning-rate", "-1"], "argument --learning-rate: '-1' is not"),
        (["resel", "--env", "Pendulum-P", "--steps", "0"], "argument --steps: '0' is not"),
        (["resel", "--env", "Pendulum-P", "--seed", "0", "-1"], "argument --seed: '-1' is not"),
        (["resel", "--env", "Pendulum-P", "--batch-size", "-4"], "argument --batch-size"),
        (["meta_train", "--seed", "-1"], "argument --seed: '-1' is not"),
        (["meta_train", "--num-processes", "0"], "argument --num-processes: '0' is not"),
        (["meta_train", "evaluate", "gridworld", "--seeds", "0"], "argument --seeds: '0' is not"),
        (["meta_train", "baselines", "--lrs", "1e-3", "inf"], "argument --lrs: 'inf' is not"),
        (["eval", "run", "quickstart", "--workers", "0"], "argument --workers: '0' is not"),
        (["eval", "bench", "optimizer", "--repeats", "0"], "argument --repeats: '0' is not"),
        (["eval", "bench", "envs", "--steps", "1.5"], "argument --steps: '1.5' is not"),
        (["eval", "analyze", "output-variation", "--episodes", "0"], "argument --episodes"),
        (["eval", "analyze", "context-embedding", "--seed", "-3"], "argument --seed: '-3'"),
        # numbers their config checks (MetaTrainConfig, GradConfig), one line too, before compute
        (["meta_train", "--steps", "0", "--no-progress"], "meta_steps must be a positive integer"),
        (["meta_train", "--units", "-2", "--no-progress"], "units_per_task must be a positive"),
        (["eval", "analyze", "grad-distribution", "--num-envs", "0"], "num_envs must be >= 1"),
    ],
)
def test_non_positive_numbers_are_refused_in_one_line(argv, message, capsys):
    code, _, err = _exit(capsys, argv[0], argv[1:])
    assert code == 2
    assert err.startswith(f"error: {message}") and len(err.splitlines()) == 1, err


def test_a_wrong_choice_is_one_line_with_close_matches(capsys):
    code, _, err = _exit(capsys, "meta_train", ["train", "--preset", "smok"])
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: argument --preset: invalid choice: 'smok' (did you mean smoke?)")
    assert err.rstrip().endswith("choose from paper, cpu, catch, smoke")
    code, _, err = _exit(capsys, "eval", ["run", "quickstart", "--backend", "Ray"])
    assert code == 2 and "(did you mean ray?)" in err and len(err.splitlines()) == 1


def test_help_lists_the_real_choices(capsys):
    from meta_train.config import PRESETS

    code, out, _ = _exit(capsys, "meta_train", ["train", "--help"])
    assert code == 0 and f"--preset {{{','.join(PRESETS)}}}" in out
    assert "paper or cpu" not in out


def test_light_choices_match_the_modules_that_define_them():
    """The JAX-free parsers name choices and defaults; these are the real ones."""
    from eval.analyze import cli as analyze_cli
    from eval.analyze import (
        context_embedding,
        grad_distribution,
        output_variation,
        training_dynamics,
    )
    from eval.bench import cli as bench_cli
    from eval.bench.envs import FAMILY_TASKS
    from eval.ppo import PRESETS as PPO_PRESETS
    from meta_train import cli as meta_cli
    from meta_train import protocol
    from meta_train.a2c import CONV_LAYOUTS
    from meta_train.config import PRESETS as TRAIN_PRESETS
    from optim4rl.networks import KINDS
    from resel import __main__ as resel_main
    from resel.config import PRESETS as RESEL_PRESETS

    assert tuple(TRAIN_PRESETS) == meta_cli.TRAIN_PRESETS
    assert set(meta_cli.EVAL_PRESETS) == set(protocol.EVAL_PRESETS)
    assert set(meta_cli.TRAIN_PRESETS) <= set(meta_cli.EVAL_PRESETS)  # evaluate what you train
    assert meta_cli.KINDS == KINDS and meta_cli.CONV_LAYOUTS == CONV_LAYOUTS
    assert tuple(protocol.OPTIMIZERS) == meta_cli.OPTIMIZERS
    assert meta_cli.LR_GRID == protocol.LR_GRID
    assert set(resel_main.PRESETS) == set(RESEL_PRESETS)
    assert tuple(FAMILY_TASKS) == bench_cli.FAMILIES and set(bench_cli.PPO_PRESETS) == set(
        PPO_PRESETS
    )
    for module in (context_embedding, output_variation, training_dynamics):
        assert set(analyze_cli.PRESETS) == set(module.SCALES), module.__name__
    assert set(analyze_cli.PRESETS) == set(grad_distribution.PRESETS)


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser (those that take options), by command."""
    from eval import runner
    from eval.analyze import COMMANDS as ANALYSES
    from eval.bench import BENCHMARKS
    from eval.report import cli as report_cli
    from meta_train.__main__ import COMMANDS as META_TRAIN
    from meta_train.cli import train_parser
    from optim4rl import __main__ as optim4rl_main
    from resel import __main__ as resel_main

    parsers = [
        optim4rl_main.demo_parser(),
        resel_main.parser(),
        train_parser(),
        runner.parser(),
        report_cli.parser(),
    ]
    for commands in (META_TRAIN, BENCHMARKS, ANALYSES):
        parsers += [cli.load(c.parser)() for c in commands.values() if c.parser]
    return {p.prog.removeprefix("python -m "): p for p in parsers}


def test_help_shows_every_default(capsys):
    parsers = _parsers()
    assert len(parsers) == 7 + 6 + 4
    missing = []
    for name, parser in parsers.items():
        text = "".join(parser.format_help().split())  # argparse wraps lines, even at hyphens
        for action in parser._actions:
            default = action.default
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if any(default is d for d in (None, False, argparse.SUPPRESS)) or default == []:
                continue  # no default (the help says what happens then, where it matters)
            help_text = " ".join(action.help.split())
            shown = " ".join(map(str, default)) if isinstance(default, list) else default
            want = "".join(f"{help_text} (default: {shown})".split())
            if want not in text and "default" not in help_text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing
    code, out, _ = _exit(capsys, "resel", ["train", "--help"])
    out = " ".join(out.split())
    for option in ("--steps", "--warmup", "--eval-every", "--batch-size"):
        assert option in out
    assert "total environment steps (default: the preset's)" in out
    assert "one or more seeds (vmapped) (default: 0)" in out
    code, out, _ = _exit(capsys, "meta_train", ["train", "--help"])
    out = " ".join(out.split())
    assert "--checkpoint-every" in out and "0: none (default: the preset's)" in out
    assert "run folder (default: runs/meta_train)" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "run", "quickstart"],
        ["eval", "analyze", "output-variation"],
        ["eval", "analyze", "training-dynamics"],
        ["eval", "analyze", "context-embedding"],
        ["eval", "analyze", "grad-distribution"],
    ],
)
def test_preset_everywhere_and_scale_as_a_hidden_alias(argv, capsys):
    parser = _parsers()[" ".join(argv[:-1] if argv[1] == "run" else argv)]
    dest = "preset" if argv[1] == "run" else "scale"
    positional = argv[2:] if argv[1] == "run" else []
    assert getattr(parser.parse_args([*positional, "--preset", "paper"]), dest) == "paper"
    assert capsys.readouterr().err == ""
    assert getattr(parser.parse_args([*positional, "--scale", "paper"]), dest) == "paper"
    assert "--scale is deprecated; use --preset" in capsys.readouterr().err
    assert getattr(parser.parse_args(positional), dest) == "cpu"
    assert "--scale" not in parser.format_help() and "--preset {cpu,paper}" in parser.format_help()


def test_task_names_ignore_case_and_unknown_ones_name_the_listing_command():
    from resel.envs.registry import canonical_name

    assert canonical_name("pendulum-p") == "Pendulum-P"
    assert canonical_name("KEYTODOOR-60") == "KeyToDoor-60"
    assert canonical_name("Pendulum-P") == "Pendulum-P"
    with pytest.raises(ValueError) as info:
        canonical_name("pendulm-p")
    assert "did you mean 'Pendulum-P'" in str(info.value)
    assert "`python -m resel envs` lists all" in str(info.value)
    assert "resel.envs.names()" not in str(info.value)


# Commands report UsageError and Interrupted from the training call in one line.
STOPPED = "stopped at step 40 (last checkpoint: step 30);\nresume: python -m x --resume"


def _raiser(error: Exception):
    def run(*args, **kwargs):
        raise error

    return run


@pytest.fixture(params=["usage", "interrupted"])
def failure(request):
    if request.param == "usage":
        return UsageError("runs/x already holds a run"), 2, "error: runs/x already holds a run\n"
    one_line = "stopped at step 40 (last checkpoint: step 30); resume: python -m x --resume\n"
    return Interrupted(STOPPED), 130, one_line


def test_resel_train_reports_usage_errors_and_interrupts(failure, monkeypatch, capsys, tmp_path):
    from resel import train

    error, code, printed = failure
    monkeypatch.setattr(train, "run", _raiser(error))
    argv = ["--env", "pendulum-p", "--steps", "100", "--out", str(tmp_path), "--no-progress"]
    assert _main_of("resel")(argv) == code
    assert capsys.readouterr().err == printed


def test_meta_train_commands_report_usage_errors_and_interrupts(
    failure, monkeypatch, capsys, tmp_path
):
    from meta_train import baselines, evaluate, run

    error, code, printed = failure
    monkeypatch.setattr(run, "train", _raiser(error))
    assert _main_of("meta_train")(["--preset", "smoke", "--no-progress"]) == code
    assert capsys.readouterr().err == printed
    monkeypatch.setattr(baselines, "tune", _raiser(error))
    assert _main_of("meta_train")(["baselines", "--preset", "smoke"]) == code
    assert capsys.readouterr().err == printed
    monkeypatch.setattr(evaluate, "evaluate", _raiser(error))
    argv = ["evaluate", "gridworld", "--preset", "smoke", "--out", str(tmp_path)]
    assert _main_of("meta_train")(argv) == code
    assert capsys.readouterr().err.endswith(printed)


def test_eval_run_reports_usage_errors_and_interrupts(failure, monkeypatch, capsys, tmp_path):
    from eval import runner, study

    error, code, printed = failure
    loaded = SimpleNamespace(name="s", scale="cpu", tasks=["t"], variants=["v"], seeds=[0],
                             tuning_seeds=(), swept=list, families=lambda: {"v": ["v"]})  # fmt: skip
    monkeypatch.setattr(study, "load_study", lambda *args: loaded)  # the command, not the study
    monkeypatch.setattr(runner, "run_study", _raiser(error))
    assert _main_of("eval")(["run", "quickstart", "--out", str(tmp_path)]) == code
    assert capsys.readouterr().err == printed


def test_dispatch_turns_ctrl_c_into_one_line_and_130(tmp_path, monkeypatch, capsys):
    (tmp_path / "cli_fixture_commands.py").write_text(
        "from optim4rl.runtime.errors import Interrupted, UsageError\n"
        "def ctrl_c(argv):\n    raise KeyboardInterrupt\n"
        "def stopped(argv):\n    raise Interrupted('stopped at step 3')\n"
        "def refused(argv):\n    raise UsageError('no run to resume')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    commands = {
        name: cli.Command(f"cli_fixture_commands:{name}", "a command that stops")
        for name in ("ctrl_c", "stopped", "refused")
    }
    assert cli.dispatch("prog", "test", commands, ["ctrl_c"]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert cli.dispatch("prog", "test", commands, ["stopped"]) == 130
    assert capsys.readouterr().err == "stopped at step 3\n"
    assert cli.dispatch("prog", "test", commands, ["refused"]) == 2
    assert capsys.readouterr().err == "error: no run to resume\n"


def test_ctrl_c_in_a_real_command_exits_130_without_a_traceback():
    code = (
        "import resel.__main__ as m, sys\n"
        "def stop(argv):\n    raise KeyboardInterrupt\n"
        "m.envs_main = stop\n"
        "sys.exit(m.main(['envs']))\n"
    )
    done = _run("-c", code)
    assert done.returncode == 130 and done.stderr == "interrupted\n"


def test_workers_and_runner_import_no_circle():
    done = _run(
        "-c",
        "import sys, eval.workers; assert 'eval.runner' not in sys.modules; "
        "import eval.cells; assert 'jax' not in sys.modules; "
        "import eval.runner; assert eval.runner.run_cell is eval.workers.run_cell",
    )
    assert done.returncode == 0, done.stderr


def test_slow_list_names_existing_tests():
    slow = importlib.import_module("conftest").SLOW
    assert slow  # the marker of pyproject.toml is applied to something
    missing = []
    for file, names in slow.items():
        tree = ast.parse((ROOT / "tests" / file).read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        missing += [f"{file}::{name}" for name in names if name not in defined]
    assert not missing, missing
