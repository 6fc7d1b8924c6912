"""Benchmarks: `python -m eval bench NAME`. Each lives in its own module with `main(argv) -> int`.

Every benchmark reports ratios against a baseline measured in the same run, since absolute times on
a shared CPU vary by about +-30% from run to run.
"""

from __future__ import annotations

import difflib
import importlib
import sys

BENCHMARKS = {
    "optimizer": "eval.bench.optimizer",
    "meta-train": "eval.bench.meta_train",
    "resel": "eval.bench.resel",
    "envs": "eval.bench.envs",
    "ppo": "eval.bench.ppo",
    "scaling": "eval.bench.scaling",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("benchmarks: " + ", ".join(BENCHMARKS))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        close = difflib.get_close_matches(name, BENCHMARKS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(
            f"unknown benchmark {name!r}{hint}; available: {', '.join(BENCHMARKS)}", file=sys.stderr
        )
        return 2
    try:
        module = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as err:
        print(f"benchmark {name!r} is not available yet ({err})", file=sys.stderr)
        return 2
    return module.main(rest)
