"""`python -m eval {run,report,bench,analyze} ...`: the toolkit's command line for studies."""

from __future__ import annotations

import sys

from optim4rl.runtime.cli import Command, dispatch

COMMANDS = {
    "run": Command(
        "eval.runner:main", "run a study (TOML file or shipped name), then write its report"
    ),
    "report": Command(
        "eval.report:main", "tables (Markdown, CSV) and plots (PNG, PDF) of a study's results"
    ),
    "bench": Command(
        "eval.bench:main", "benchmarks, as ratios to a baseline timed in the same run"
    ),
    "analyze": Command("eval.analyze:main", "the papers' analyses (figures of both papers)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch("python -m eval", "Studies, reports, benchmarks and analyses.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
