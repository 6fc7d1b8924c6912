"""`python -m eval {bench,run,report,analyze} ...`: the toolkit's command line for studies."""

from __future__ import annotations

import sys

USAGE = """usage: python -m eval COMMAND ...

commands:
  bench NAME [options]   benchmarks; `python -m eval bench --list` names them
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "bench":
        from eval.bench import main as bench_main

        return bench_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
