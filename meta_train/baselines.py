"""`python -m meta_train baselines --preset cpu --out runs/baselines`: Adam and RMSProp as the
authors train them (clip 1, no reward scale) over the lr grid, scored against the random policy by
the gridworld protocol (meta_train.protocol); writes baselines.json (`results[task]["adam"]["lr"]`
is the chosen lr, which `evaluate --baselines` reads), baselines.md and baselines.csv
(meta_train.report). `--optimizers adam --lrs 3e-3` runs one cell, e.g. to set one configuration
beside the authors' code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from meta_train.cli import baselines_parser
from meta_train.protocol import (
    FLOOR,
    LR_GRID,
    OPTIMIZERS,
    SCORE_RULE,
    SELECTION_RULE,
    EvalConfig,
    _unique,
    compare_families,
    eval_config_from_args,
    hand_family,
    protocol_lines,
    random_family,
)
from meta_train.report import write_outputs
from optim4rl.runtime.cli import error, interrupted
from optim4rl.runtime.errors import Interrupted, UsageError
from optim4rl.runtime.numbers import g3


def tune(
    ec: EvalConfig,
    lrs: Sequence[float] = LR_GRID,
    progress: bool = True,
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS),
) -> dict:
    """`compare_families` of the hand-designed `optimizers`, each over `lrs`, and the random
    policy, on every task of `ec`."""
    fams = {name: hand_family(name, lrs) for name in optimizers}
    fams[FLOOR] = random_family()
    return compare_families(ec, dict.fromkeys(ec.tasks, fams), progress, "baselines")


def main(argv: list[str]) -> int:
    args = baselines_parser().parse_args(argv)
    try:
        ec = eval_config_from_args(args)
    except ValueError as err:
        return error(str(err))
    out = Path(args.out)
    lrs = _unique(args.lrs)
    try:
        payload = tune(ec, lrs, progress=not args.no_progress, optimizers=tuple(args.optimizers))
    except UsageError as err:
        return error(str(err))
    except Interrupted as err:
        return interrupted(err)
    header = {
        "command": "baselines",
        "eval_config": ec.to_json(),
        "lrs": list(lrs),
        "evaluation_seeds": ec.seed_ids,
        "tuning_seeds": ec.tuning_seed_ids,
        "selection": SELECTION_RULE,
        "score": SCORE_RULE,
        "reward_scale": "none (the authors' baselines)",
    }
    lines = [
        f"optimizers: {', '.join(args.optimizers)} over lr {', '.join(map(g3, lrs))}, no reward "
        "scale; random: the untrained network (lr 0)",
        *protocol_lines(ec),
    ]
    md = write_outputs(out, "baselines", "baselines", lines, {"header": header, **payload})
    print(md)
    return 0
