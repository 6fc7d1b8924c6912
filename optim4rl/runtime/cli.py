"""One command-line style for the toolkit: `python -m PACKAGE COMMAND [options]`.

Used by `python -m optim4rl`, `meta_train`, `resel` and `eval` (and `eval bench` / `eval analyze`):
`-h`/`--help` prints the usage with every command and exits 0, `--list` prints one line per command,
no command at all prints the usage to stderr and exits 2 (as argparse does for a missing argument),
and an unknown command gets `error: ...` with close matches, exit 2. A command is a
"module:function" imported only when it runs; a command whose module imports JAX names a `parser`
("module:function" returning an `ArgumentParser`, in a module that does not), which checks the
options first, so `--help` and every option error answer without loading JAX.

`ArgumentParser` is argparse's with the toolkit's rules: help shows every default, an unknown option
is reported before a missing one (with close matches), every error is one `error:` line (exit 2),
and a wrong choice names the close ones. Ctrl-C anywhere in a command prints `interrupted` and exits
130 (`dispatch`).

Importing this module loads no JAX (nor does `optim4rl`'s package: its names load lazily).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

USAGE_ERROR = 2
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
HEARTBEAT_TIMEOUT = 100  # jax.distributed.initialize's default, in seconds


class Command(NamedTuple):
    """A subcommand: `target` is "module:function", function(argv: list[str]) -> int.

    `parser`: "module:function" -> ArgumentParser, in a module that imports no JAX; when given, the
    options are checked with it before `target`'s module is imported."""

    target: str
    help: str  # one line
    parser: str | None = None


def did_you_mean(name: str, names: Iterable[str], cutoff: float = 0.6) -> str:
    """' (did you mean a, b?)' with the close matches of `name` (first: equal up to case), or ''."""
    names = list(names)
    close = [n for n in names if n.lower() == name.lower()] or difflib.get_close_matches(
        name, names, n=3, cutoff=cutoff
    )
    return f" (did you mean {', '.join(close)}?)" if close else ""


def error(message: str, code: int = USAGE_ERROR) -> int:
    """Print `error: message` to stderr; returns the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def interrupted(err: BaseException | str = "interrupted") -> int:
    """Print a stopped run's message (`optim4rl.runtime.errors.Interrupted`) in one line to
    stderr; returns 130."""
    print(" ".join(str(err).split()) or "interrupted", file=sys.stderr)
    return INTERRUPTED


# ------------------------------------------------------------------------------------ argparse


def _number(kind: type, low: float, inclusive: bool, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    parse.__name__ = what.split()[-1]
    return parse


positive_int = _number(int, 1, True, "a positive integer")
non_negative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a positive number")
non_negative_float = _number(float, 0.0, True, "a number >= 0")


class HelpFormatter(argparse.HelpFormatter):
    """argparse's, with "(default: X)" after every option that has a default its help does not
    already give (None, False and an empty list are no default; 0 is one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            text == argparse.SUPPRESS
            or "default" in text
            or any(default is d for d in (None, False, argparse.SUPPRESS))
            or (isinstance(default, list | tuple) and not default)
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class _DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: stores like it, and says which to use instead."""

    def __init__(self, option_strings: list[str], dest: str, use: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.use = use

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if not getattr(parser, "_quiet", False):
            print(f"warning: {option_string} is deprecated; use {self.use}", file=sys.stderr)
        setattr(namespace, self.dest, values)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with the toolkit's rules (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self._quiet = False

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        """argparse's, but unknown options are reported before missing required ones."""
        args = list(sys.argv[1:] if args is None else args)
        self._refuse_unknown(args)
        return super().parse_args(args, namespace)

    def check(self, args: Sequence[str]) -> None:
        """Parse `args` for their errors and `--help` only (no deprecation warnings)."""
        self._quiet = True
        try:
            self.parse_args(args)
        finally:
            self._quiet = False

    def _refuse_unknown(self, args: list[str]) -> None:
        options = args[: args.index("--")] if "--" in args else args
        if any(a in ("-h", "--help") for a in options):
            return  # the help, with the required options shown as required
        required = [a for a in self._actions if a.required]
        groups = [g for g in self._mutually_exclusive_groups if g.required]
        quiet, self._quiet = self._quiet, True
        for item in (*required, *groups):
            item.required = False
        try:
            _, extras = self.parse_known_args(args, argparse.Namespace())
        finally:
            for item in (*required, *groups):
                item.required = True
            self._quiet = quiet
        if extras:
            self.error(self._unrecognized(extras))

    def _unrecognized(self, extras: list[str]) -> str:
        options = [
            o
            for a in self._actions
            if a.help != argparse.SUPPRESS
            for o in a.option_strings
            if o.startswith("--")
        ]
        words = []
        for extra in extras:
            hint = ""
            if extra.startswith("--"):
                hint = did_you_mean(extra.partition("=")[0], options, cutoff=0.75)
            words.append(extra + hint)
        return f"unrecognized arguments: {' '.join(words)}"

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r}{did_you_mean(str(value), choices)}; "
                f"choose from {', '.join(choices)}",
            )

    def error(self, message: str) -> NoReturn:
        """One line, `error: message`, on stderr; exit 2 (argparse prints the whole usage)."""
        if message.startswith(("unrecognized arguments", "the following arguments are required")):
            message += f" (`{self.prog} --help` lists the options)"
        self.exit(USAGE_ERROR, f"error: {message}\n")


def add_preset_argument(
    parser: argparse.ArgumentParser,
    choices: Sequence[str],
    default: str | None,
    help: str,
    dest: str = "preset",
) -> None:
    """`--preset`, with `--scale` (its old name in eval and analyze) as a hidden deprecated alias."""
    parser.add_argument("--preset", choices=choices, default=default, dest=dest, help=help)
    parser.add_argument(
        "--scale",
        choices=choices,
        dest=dest,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        action=_DeprecatedAlias,
        use="--preset",
    )


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """The multi-process flags of `optim4rl.runtime.distributed` (all three or none)."""
    g = parser.add_argument_group("multi-process (default: Slurm or JAX_* environment, else one)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    g.add_argument(
        "--num-processes",
        type=positive_int,
        metavar="N",
        dest="num_processes",
        help="processes in all",
    )
    g.add_argument(
        "--process-id",
        type=non_negative_int,
        metavar="I",
        dest="process_id",
        help="this process (0 .. N-1)",
    )
    g.add_argument(
        "--heartbeat-timeout",
        type=positive_int,
        default=HEARTBEAT_TIMEOUT,
        metavar="S",
        dest="heartbeat_timeout",
        help="seconds without a heartbeat before a process counts as dead (default: "
        f"{HEARTBEAT_TIMEOUT}, JAX's; raise it on oversubscribed nodes)",
    )


# ------------------------------------------------------------------------------------ dispatch


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


def load(target: str) -> Callable[..., Any]:
    """The function named by "module:function"."""
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


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
    A KeyboardInterrupt prints `interrupted` and returns 130; `UsageError` and `Interrupted`
    (`optim4rl.runtime.errors`) that a command lets through are reported in one line too.
    """
    from optim4rl.runtime.errors import Interrupted, UsageError

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
    command = commands[first]
    try:
        if command.parser:
            load(command.parser)().check(rest)
        return load(command.target)(rest)
    except KeyboardInterrupt:
        return interrupted()
    except Interrupted as err:
        return interrupted(err)
    except UsageError as err:
        return error(str(err))
