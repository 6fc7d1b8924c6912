"""Benchmarks: `python -m eval bench NAME`. Each lives in its own module with `main(argv) -> int`;
its options are in `eval.bench.cli`, which loads no JAX (`--help` answers at once).

Every benchmark reports ratios against a baseline measured in the same run, since absolute times on
a shared CPU vary by about +-30% from run to run.
"""

from __future__ import annotations

import sys

from optim4rl.runtime.cli import Command, dispatch

BENCHMARKS = {
    "optimizer": Command(
        "eval.bench.optimizer:main",
        "one update: learned kinds vs optax.adamw",
        parser="eval.bench.cli:optimizer",
    ),
    "meta-train": Command(
        "eval.bench.meta_train:main",
        "one meta-iteration vs plain A2C updates",
        parser="eval.bench.cli:meta_train",
    ),
    "resel": Command(
        "eval.bench.resel:main",
        "RESeL update per encoder, Mamba vs GRU, parallel vs sequential scan",
        parser="eval.bench.cli:resel",
    ),
    "envs": Command(
        "eval.bench.envs:main",
        "env steps/s of every task family vs gymnax / Brax stepping the same dynamics",
        parser="eval.bench.cli:envs",
    ),
    "ppo": Command(
        "eval.bench.ppo:main",
        "eval.ppo training env steps/s (Adam, Optim4RL) vs Brax's own PPO",
        parser="eval.bench.cli:ppo",
    ),
    "scaling": Command(
        "eval.bench.scaling:main",
        "study cells with --workers 1 vs 2; meta-iterations/s with 1 vs 2 processes",
        parser="eval.bench.cli:scaling",
    ),
}


def main(argv: list[str]) -> int:
    return dispatch(
        "python -m eval bench",
        "Benchmarks; each reports ratios to a baseline measured in the same run.",
        BENCHMARKS,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
