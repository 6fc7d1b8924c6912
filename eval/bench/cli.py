"""The options of every `python -m eval bench NAME`, in a module that imports no JAX, so that
`--help` and option errors answer at once (each benchmark module parses with its parser here).

Choices named here rather than imported (their modules load JAX) are checked by tests/test_cli.py.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from meta_train.cli import TRAIN_PRESETS
from optim4rl.runtime.cli import ArgumentParser, positive_float, positive_int

FAMILIES = ("classic", "locomotion", "gravity", "meta", "credit_assignment")  # envs.FAMILY_TASKS
PPO_PRESETS = ("cpu", "paper")  # eval.ppo.PRESETS
RESEL_PARTS = ("throughput", "updates", "encoders", "scans")


def docstring(module: str) -> str | None:
    """A module's docstring, read from its source without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text()))


def optimizer() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval bench optimizer",
        description="One update: learned kinds vs optax.adamw.",
    )
    p.add_argument(
        "--sizes",
        type=positive_float,
        nargs="+",
        default=[1e4, 1e5, 1e6],
        help="parameters per tree",
    )
    p.add_argument(
        "--repeats", type=positive_int, default=20, help="interleaved timed rounds (median)"
    )
    return p


def meta_train() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval bench meta-train",
        description="One meta-iteration vs plain A2C updates.",
    )
    p.add_argument("--preset", default="cpu", choices=TRAIN_PRESETS, help="meta-training preset")
    p.add_argument("--tasks", help="comma-separated subset of tasks (default: the preset's)")
    p.add_argument(
        "--units", type=positive_int, help="training units per task (default: the preset's)"
    )
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="interleaved timed rounds (median)"
    )
    p.add_argument(
        "--simple",
        action="store_true",
        help="also time the meta-gradient computed the simplest way (no remat, unrolled K)",
    )
    return p


def resel() -> ArgumentParser:
    p = ArgumentParser(prog="python -m eval bench resel", description=docstring("eval.bench.resel"))
    p.add_argument("--quick", action="store_true", help="cpu sizes and short lengths only")
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="interleaved timed rounds (median)"
    )
    p.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=RESEL_PARTS,
        help="parts of the benchmark to leave out",
    )
    return p


def envs() -> ArgumentParser:
    p = ArgumentParser(prog="python -m eval bench envs", description=docstring("eval.bench.envs"))
    p.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"comma-separated subset of {','.join(FAMILIES)}",
    )
    p.add_argument("--tasks", default="", help="comma-separated task names (adds to families)")
    p.add_argument("--steps", type=positive_int, default=200, help="steps per timed call")
    p.add_argument("--batches", default="1,64", help="comma-separated batch sizes")
    p.add_argument("--backends", default="spring", help="Brax backends to time")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed repetitions (median)")
    p.add_argument("--json", default="", help="also write the rows to this JSON file")
    return p


def ppo() -> ArgumentParser:
    p = ArgumentParser(prog="python -m eval bench ppo", description=docstring("eval.bench.ppo"))
    p.add_argument("--env", default="inverted_pendulum", help="Brax environment")
    p.add_argument("--preset", default="cpu", choices=PPO_PRESETS, help="eval.ppo preset (sizes)")
    p.add_argument(
        "--num-envs",
        type=positive_int,
        default=None,
        help="parallel environments (default: the preset's)",
    )
    p.add_argument("--steps-per-epoch", type=positive_int, default=8, help="training steps timed")
    p.add_argument(
        "--learning-rate", type=positive_float, default=3e-4, help="of Adam and Optim4RL"
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=10,
        help="interleaved rounds of the two epochs (median)",
    )
    p.add_argument("--skip-brax", action="store_true", help="skip Brax's own PPO (slow)")
    return p


def scaling() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m eval bench scaling",
        description="Study cells with --workers 1 vs 2; meta-iterations/s with 1 vs 2 processes.",
    )
    p.add_argument(
        "--budget", type=positive_int, default=100_000, help="env steps per run of the study"
    )
    p.add_argument(
        "--preset",
        default="cpu",
        choices=TRAIN_PRESETS,
        help="meta_train preset of the second part",
    )
    p.add_argument("--units", type=positive_int, default=16, help="units per task (all processes)")
    p.add_argument(
        "--repeats", type=positive_int, default=3, help="timed repeats of each measurement"
    )
    p.add_argument("--skip", choices=("study", "meta-train"), help="run only the other part")
    return p
