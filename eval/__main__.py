"""`python -m eval {bench,run,report,analyze} ...`: the toolkit's command line for studies."""

from __future__ import annotations

import sys

USAGE = """usage: python -m eval COMMAND ...

commands:
  run STUDY [--out DIR] [--scale cpu|paper] [--workers N | --backend ray]
                         run a study (TOML file or shipped name), then write its report
  report DIR             tables (Markdown, CSV) and plots (PNG, PDF) of a study's results
  bench NAME [options]   benchmarks; `python -m eval bench --list` names them
  analyze NAME [options] the papers' analyses; `python -m eval analyze --list` names them
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
    if command == "run":
        from eval.runner import main as run_main

        return run_main(rest)
    if command == "report":
        from eval.report import main as report_main

        return report_main(rest)
    if command == "analyze":
        from eval.analyze import main as analyze_main

        return analyze_main(rest)
    print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
