"""`python -m eval analyze NAME ...`: the papers' analyses as commands.

Each analysis is a module of this package with `main(argv: list[str]) -> int`; COMMANDS maps the
command name to it (optim4rl.runtime.cli), imported only when it runs. Their options are in
`eval.analyze.cli`, which loads no JAX (`--help` answers at once).
"""

from __future__ import annotations

import sys

from optim4rl.runtime.cli import Command, dispatch

COMMANDS: dict[str, Command] = {
    "output-variation": Command(
        "eval.analyze.output_variation:main",
        "RESeL Fig. 3: policy output change vs rollout step, Prop. 1",
        parser="eval.analyze.cli:output_variation",
    ),
    "training-dynamics": Command(
        "eval.analyze.training_dynamics:main",
        "RESeL Figs. 4-5: gradient norm and value loss",
        parser="eval.analyze.cli:training_dynamics",
    ),
    "context-embedding": Command(
        "eval.analyze.context_embedding:main",
        "RESeL Fig. 14: context embeddings by gravity, 2-d",
        parser="eval.analyze.cli:context_embedding",
    ),
    "grad-distribution": Command(
        "eval.analyze.grad_distribution:main",
        "Optim4RL Fig. 1: agent gradients, RL vs supervised",
        parser="eval.analyze.cli:grad_distribution",
    ),
}


def main(argv: list[str]) -> int:
    return dispatch("python -m eval analyze", "The papers' analyses.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
