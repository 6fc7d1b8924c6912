"""`python -m eval analyze NAME ...`: the papers' analyses as commands.

Each analysis is a module of this package with `main(argv: list[str]) -> int`; COMMANDS maps the
command name to the module, imported only when it runs.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "output-variation": (
        "output_variation",
        "RESeL Fig. 3: policy output change vs rollout step, Prop. 1",
    ),
    "training-dynamics": ("training_dynamics", "RESeL Figs. 4-5: gradient norm and value loss"),
    "context-embedding": ("context_embedding", "RESeL Fig. 14: context embeddings by gravity, 2-d"),
    "grad-distribution": (
        "grad_distribution",
        "Optim4RL Fig. 1: agent gradients, RL vs supervised",
    ),
}


def usage() -> str:
    lines = ["usage: python -m eval analyze NAME [options]", "", "analyses:"]
    lines += [f"  {name:<22} {doc}" for name, (_, doc) in sorted(COMMANDS.items())]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown analysis {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"eval.analyze.{COMMANDS[name][0]}")
    return module.main(rest)
