"""One dispatch style for `python -m optim4rl | meta_train | resel | eval` (optim4rl.cli), and help
text on every option of every command line."""

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("optim4rl", "meta_train", "resel", "eval")
DISPATCHERS = {  # main(argv) of each dispatcher, and its commands
    "optim4rl.__main__": ("demo", "list"),
    "meta_train.__main__": ("train", "evaluate", "baselines"),
    "resel.__main__": ("train", "envs"),
    "eval.__main__": ("run", "report", "bench", "analyze"),
    "eval.bench": ("optimizer", "meta-train", "resel", "envs", "ppo"),
    "eval.analyze": ("output-variation", "training-dynamics", "context-embedding"),
}


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
    assert set(commands) <= set(listed) and all(len(doc) > 15 for doc in listed.values())
    typo = commands[0][:-1] + "x" + commands[0][-1]  # one letter inserted
    assert main([typo]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: unknown command {typo!r} (did you mean {commands[0]}")


def _add_argument_calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            yield node


def test_every_option_has_help_text():
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for call in _add_argument_calls(path):
                help_kw = next((k.value for k in call.keywords if k.arg == "help"), None)
                text = help_kw.value if isinstance(help_kw, ast.Constant) else ""
                if isinstance(help_kw, ast.JoinedStr | ast.BinOp):
                    text = ast.unparse(help_kw)  # f-strings and concatenations
                if len(str(text).split()) < 2:  # "m" is not help text
                    flag = ast.unparse(call.args[0]) if call.args else "?"
                    missing.append(f"{path.relative_to(ROOT)}:{call.lineno} {flag}")
    assert not missing, missing
