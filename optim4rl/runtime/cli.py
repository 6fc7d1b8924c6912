"""One command-line style for the toolkit: `python -m PACKAGE COMMAND [options]`.

Used by `python -m optim4rl`, `meta_train`, `resel` and `eval` (and `eval bench` / `eval analyze`):
`-h`/`--help` prints the usage with every command and exits 0, `--list` prints one line per command,
no command at all prints the usage to stderr and exits 2 (as argparse does for a missing argument),
and an unknown command gets `error: ...` with close matches, exit 2. A command is a
"module:function" imported only when it runs, so `--help` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Iterable, Mapping
from typing import NamedTuple

USAGE_ERROR = 2


class Command(NamedTuple):
    """A subcommand: `target` is "module:function", function(argv: list[str]) -> int."""

    target: str
    help: str  # one line


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """' (did you mean a, b?)' with the close matches of `name`, or ''."""
    close = difflib.get_close_matches(name, list(names), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def error(message: str, code: int = USAGE_ERROR) -> int:
    """Print `error: message` to stderr; returns the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def listing(commands: Mapping[str, Command]) -> str:
    """One line per command: its name and its one-line description."""
    width = max(len(name) for name in commands) + 2
    return "\n".join(f"  {name:<{width}}{cmd.help}" for name, cmd in commands.items())


def usage(prog: str, description: str, commands: Mapping[str, Command], default: str | None) -> str:
    head = f"usage: {prog} COMMAND [options]"
    if default:
        head += f"\n       {prog} [options]          (the same as `{prog} {default} [options]`)"
    return (
        f"{head}\n\n{description}\n\ncommands:\n{listing(commands)}\n\n"
        f"`{prog} COMMAND --help` describes a command's options; `{prog} --list` lists commands."
    )


def dispatch(
    prog: str,
    description: str,
    commands: Mapping[str, Command],
    argv: list[str] | None = None,
    *,
    default: str | None = None,
) -> int:
    """Run the command named by argv[0] on argv[1:]; see the module docstring for the rules.

    With `default`, an argv that starts with an option (other than -h, --help, --list) runs that
    command, so `python -m meta_train --preset cpu` means `python -m meta_train train --preset cpu`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(usage(prog, description, commands, default), file=sys.stderr)
        return error(f"{prog} needs a command")
    first, rest = argv[0], argv[1:]
    if first in ("-h", "--help"):
        print(usage(prog, description, commands, default))
        return 0
    if first == "--list":
        print(listing(commands))
        return 0
    if default and first.startswith("-"):
        first, rest = default, argv
    if first not in commands:
        return error(
            f"unknown command {first!r}{did_you_mean(first, commands)}; commands: "
            f"{', '.join(commands)}"
        )
    module, _, function = commands[first].target.partition(":")
    return getattr(importlib.import_module(module), function)(rest)
