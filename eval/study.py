"""Study files: a TOML description of a comparison, validated before anything runs.

```toml
[study]
name = "brax_generalization"
algorithm = "ppo"                       # a key of eval.algorithms.ALGORITHMS
tasks = ["ant", "walker2d"]
num_evals = 11                          # optional: evaluations per run
last = 2                                # optional: evaluations averaged into the final score
                                        # (default: the algorithm's authors', see ALGORITHMS)
floor = "random"                        # optional: the family whose runs score 0 (a random
                                        # policy, e.g. lr 0), or "untrained" (every evaluation
                                        # seed's first evaluation, before training: ppo, resel)
reference = "adam"                      # optional: the family whose tuned runs score 1
claims = [["optim4rl", "optim4rl_init"]]  # optional: comparisons to report beyond the floor,
                                        # the reference and the best family's

[scale.cpu]                             # and [scale.paper]; `--preset` picks one (default cpu)
preset = "cpu"
seeds = [100, 101, 102]                 # evaluation seeds, the only ones reported: a list of
                                        # ints, or an int n (seeds 0..n-1)
tuning_seeds = 3                        # where swept families choose their variant: a list, or
                                        # an int n (seeds 1000..1000+n-1), disjoint from `seeds`;
                                        # default: as many as `seeds`, from 1000 (or above them)
budget = 500_000                        # environment steps per run
tasks = ["inverted_double_pendulum"]    # optional: replaces study.tasks at this scale
config = { num_envs = 64 }              # optional: overrides of the algorithm's config

[optimizers.adam]                       # one variant per table; the name labels the results
spec = "adam(learning_rate=3e-4)"       # anything optim4rl.from_spec accepts
[optimizers.adam_sweep]
spec = "adam(learning_rate={lr})"       # {placeholders} filled from the sweep: one variant each
sweep = { lr = [1e-4, 3e-4, 1e-3] }
[optimizers.per_module]
spec = { context_encoder = "adamw(learning_rate=1e-5)", default = "optim4rl(learning_rate=3e-4)" }
config = { reward_scale = 10.0 }        # optional: this family's overrides of the scale's config
```
Errors name the file, the line and the key (`StudyError`).

Two stages: every variant of a swept family runs on the tuning seeds; the one with the best mean
final score (`optim4rl.runtime.stats.select`) is run again on the evaluation seeds, beside every
unswept family. Only the evaluation seeds are reported as results.
"""

from __future__ import annotations

import difflib
import itertools
import re
import string
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

SCALES = ("cpu", "paper")
STUDY_KEYS = (
    "name", "description", "algorithm", "tasks", "num_evals", "last", "floor", "reference",
    "claims",
)  # fmt: skip
SCALE_KEYS = ("preset", "seeds", "tuning_seeds", "budget", "tasks", "config")
OPTIMIZER_KEYS = ("spec", "sweep", "config")
UNTRAINED = "untrained"  # floor = "untrained": the evaluation seeds' first evaluations
TUNING_SEED_BASE = 1000  # tuning_seeds = n means seeds 1000 .. 1000 + n - 1
TOP_KEYS = ("study", "scale", "optimizers")


class StudyError(ValueError):
    """A study file that cannot run; the message names file, line and key."""


@dataclass(frozen=True)
class Variant:
    """One optimizer assignment: `name` labels results, `family` groups a sweep, `spec` is built
    with optim4rl.from_spec, `values` holds the swept placeholders ({} outside sweeps), `config`
    the family's overrides of the algorithm's config."""

    name: str
    family: str
    spec: Any
    values: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    algorithm: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: int
    preset: str
    scale: str
    config: dict[str, Any]
    variants: tuple[Variant, ...]
    num_evals: int | None = None
    last: int = 1
    description: str = ""
    source: str = ""
    tuning_seeds: tuple[int, ...] = ()
    floor: str | None = None
    reference: str | None = None
    score_key: str = "return"  # the row field whose last `last` evaluations make the score
    claims: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "variants"}
        out["variants"] = [v.__dict__ for v in self.variants]
        return out

    def families(self) -> dict[str, list[Variant]]:
        """Family name -> its variants (candidates), in file order."""
        out: dict[str, list[Variant]] = {}
        for v in self.variants:
            out.setdefault(v.family, []).append(v)
        return out

    def swept(self) -> list[str]:
        """The families with more than one candidate: chosen on the tuning seeds."""
        return [f for f, vs in self.families().items() if len(vs) > 1]


def shipped_studies() -> list[str]:
    """Names of the studies shipped in eval/studies/."""
    folder = resources.files("eval") / "studies"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def resolve(path_or_name: str | Path) -> Path:
    """A study file path, or the shipped study of that name."""
    path = Path(path_or_name)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise StudyError(f"study file {str(path)!r} does not exist")
        return path
    names = shipped_studies()
    if str(path_or_name) not in names:
        close = difflib.get_close_matches(str(path_or_name), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise StudyError(
            f"no study file or shipped study {str(path_or_name)!r}{hint}; shipped: {', '.join(names)}"
        )
    return Path(str(resources.files("eval") / "studies" / f"{path_or_name}.toml"))


def key_lines(text: str) -> dict[str, int]:
    """Map dotted key paths ("scale.cpu.seeds") to their 1-based line numbers in TOML text.

    Handles [table] headers and `key = value` lines (inline-table members get the line of their
    parent key, which is where a reader looks); enough to point at an offending key.
    """
    lines: dict[str, int] = {}
    table = ""
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(
        r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
    )

    def clean(path: str) -> str:
        return ".".join(part.strip().strip("\"'") for part in path.split("."))

    for number, line in enumerate(text.splitlines(), start=1):
        if m := header.match(line):
            table = clean(m.group(1))
            parts = table.split(".")
            for i in range(1, len(parts) + 1):
                lines.setdefault(".".join(parts[:i]), number)
        elif m := assignment.match(line):
            parts = clean(m.group(1)).split(".")
            for i in range(1, len(parts) + 1):  # dotted keys: spec.policy = ... defines spec too
                key = ".".join(parts[:i])
                lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


class _Checker:
    def __init__(self, source: str, text: str):
        self.source = source
        self.lines = key_lines(text)

    def fail(self, key: str, message: str) -> StudyError:
        probe = key
        while probe and probe not in self.lines:
            probe = probe.rpartition(".")[0]
        where = f"{self.source}:{self.lines[probe]}" if probe else self.source
        return StudyError(f"{where}: key {key!r}: {message}")

    def allowed(self, table: dict[str, Any], prefix: str, keys: tuple[str, ...]) -> None:
        for key in table:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                name = f"{prefix}.{key}" if prefix else key
                raise self.fail(name, f"unknown key{hint} (allowed: {', '.join(keys)})")

    def typed(self, value: Any, types: type | tuple[type, ...], key: str, what: str) -> Any:
        if (
            not isinstance(value, types)
            or isinstance(value, bool)
            and bool not in (types if isinstance(types, tuple) else (types,))
        ):
            raise self.fail(key, f"must be {what}, got {value!r}")
        return value


def load_study(path_or_name: str | Path, scale: str = "cpu") -> Study:
    """Parse and validate a study (file path or shipped name) at `scale`; nothing runs here.

    Checks keys, types, the algorithm and its tasks and config keys, and builds every optimizer
    spec once with optim4rl.from_spec, so a typo fails now with file:line and key, not mid-study.
    """
    from eval.algorithms import get_algorithm

    path = resolve(path_or_name)
    text = path.read_text()
    source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{source}: not valid TOML: {err}") from err
    check = _Checker(source, text)
    check.allowed(raw, "", TOP_KEYS)
    for table in TOP_KEYS:
        if table not in raw:
            raise StudyError(f"{source}: missing [{table}] table")
        check.typed(raw[table], dict, table, "a table")

    study = raw["study"]
    check.allowed(study, "study", STUDY_KEYS)
    for key in ("name", "algorithm", "tasks"):
        if key not in study:
            raise check.fail(f"study.{key}", "is required")
    name = check.typed(study["name"], str, "study.name", "a string")
    try:
        algorithm = get_algorithm(
            check.typed(study["algorithm"], str, "study.algorithm", "a string")
        )
    except KeyError as err:
        raise check.fail("study.algorithm", err.args[0]) from None

    if scale not in SCALES:
        raise StudyError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    check.allowed(raw["scale"], "scale", SCALES)
    if scale not in raw["scale"]:
        raise check.fail("scale", f"has no [scale.{scale}] table")
    scale_table = check.typed(raw["scale"][scale], dict, f"scale.{scale}", "a table")
    prefix = f"scale.{scale}"
    check.allowed(scale_table, prefix, SCALE_KEYS)
    for key in ("preset", "seeds", "budget"):
        if key not in scale_table:
            raise check.fail(f"{prefix}.{key}", "is required")

    tasks = scale_table.get("tasks", study["tasks"])
    tasks_key = f"{prefix}.tasks" if "tasks" in scale_table else "study.tasks"
    check.typed(tasks, list, tasks_key, "a list of task names")
    if not tasks:
        raise check.fail(tasks_key, "must name at least one task")
    for task in tasks:
        try:
            algorithm.check_task(check.typed(task, str, tasks_key, "a list of strings"))
        except ValueError as err:
            raise check.fail(tasks_key, str(err)) from None

    seeds = _seeds(check, scale_table["seeds"], f"{prefix}.seeds", 0)
    budget = check.typed(scale_table["budget"], int, f"{prefix}.budget", "an int (env steps)")
    if budget < 1:
        raise check.fail(f"{prefix}.budget", f"must be >= 1, got {budget}")
    preset = check.typed(scale_table["preset"], str, f"{prefix}.preset", "a string")
    config = check.typed(scale_table.get("config", {}), dict, f"{prefix}.config", "a table")
    num_evals = study.get("num_evals")
    if num_evals is not None and (check.typed(num_evals, int, "study.num_evals", "an int") < 2):
        raise check.fail("study.num_evals", f"must be >= 2, got {num_evals}")
    last = check.typed(study.get("last", algorithm.score_last), int, "study.last", "an int")
    if last < 1 or num_evals is not None and last > num_evals:
        raise check.fail("study.last", f"must lie in [1, num_evals], got {last}")
    try:
        algorithm.check_config(preset, config)
    except ValueError as err:
        key = f"{prefix}.preset" if "preset" in str(err) else f"{prefix}.config"
        raise check.fail(key, str(err)) from None

    variants = tuple(_variants(raw["optimizers"], check, algorithm))
    if not variants:
        raise check.fail("optimizers", "names no optimizer")
    for v in variants:
        if v.config:
            try:
                algorithm.check_config(preset, {**config, **v.config})
            except ValueError as err:
                raise check.fail(f"optimizers.{v.family}.config", str(err)) from None
    families = {v.family: [w for w in variants if w.family == v.family] for v in variants}
    swept = [f for f, vs in families.items() if len(vs) > 1]
    tuning: list[int] = []
    if "tuning_seeds" in scale_table:
        key = f"{prefix}.tuning_seeds"
        tuning = _seeds(check, scale_table["tuning_seeds"], key, TUNING_SEED_BASE)
        if shared := sorted(set(tuning) & set(seeds)):
            raise check.fail(key, f"must be disjoint from the evaluation seeds; both hold {shared}")
    elif swept:  # as many tuning seeds as evaluation seeds, above every evaluation seed
        base = max(TUNING_SEED_BASE, max(seeds) + 1)
        tuning = list(range(base, base + len(seeds)))
    floor = study.get("floor")
    if floor is not None:
        check.typed(floor, str, "study.floor", "a family name or 'untrained'")
        if floor == UNTRAINED and not algorithm.evaluates_untrained:
            raise check.fail(
                "study.floor",
                f"{algorithm.name}'s first evaluation is already trained (a training window), so "
                "it is no untrained floor; add a family such as "
                '[optimizers.random] spec = "sgd(learning_rate=0.0)" and name it',
            )
        if floor != UNTRAINED and floor not in families:
            raise check.fail("study.floor", f"names no family; families: {', '.join(families)}")
        if floor in swept:
            raise check.fail("study.floor", f"{floor!r} is swept; a floor has one variant")
    reference = study.get("reference")
    if reference is not None:
        check.typed(reference, str, "study.reference", "a family name")
        if reference not in families or reference == floor:
            raise check.fail(
                "study.reference", f"must name a family other than the floor: {', '.join(families)}"
            )
        if floor is None:
            raise check.fail("study.reference", "needs a floor (study.floor) to normalise against")
    claims = check.typed(study.get("claims", []), list, "study.claims", "a list of [a, b] pairs")
    names = set(families) | ({UNTRAINED} if floor == UNTRAINED else set())
    for pair in claims:
        if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= names
                and pair[0] != pair[1]):  # fmt: skip
            raise check.fail(
                "study.claims", f"{pair!r} is not a pair of two families ({', '.join(names)})"
            )
    return Study(
        name=name,
        algorithm=algorithm.name,
        tasks=tuple(tasks),
        seeds=tuple(seeds),
        budget=budget,
        preset=preset,
        scale=scale,
        config=dict(config),
        variants=variants,
        num_evals=num_evals,
        last=last,
        description=str(study.get("description", "")),
        source=source,
        tuning_seeds=tuple(tuning),
        floor=floor,
        reference=reference,
        score_key=algorithm.score_key,
        claims=tuple(tuple(p) for p in claims),
    )


def _seeds(check: _Checker, seeds: Any, key: str, base: int) -> list[int]:
    """A list of distinct ints, or an int n meaning base .. base + n - 1."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise check.fail(key, f"must be >= 1, got {seeds}")
        return list(range(base, base + seeds))
    check.typed(seeds, list, key, "an int or a list of ints")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise check.fail(key, f"must be an int or a non-empty list of ints: {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise check.fail(key, f"repeats a seed: {seeds!r}")
    return list(seeds)


def _fill(spec: Any, values: dict[str, Any]) -> Any:
    if isinstance(spec, str):
        return spec.format(**values) if values else spec
    return {k: _fill(v, values) for k, v in spec.items()}


def _placeholders(spec: Any) -> set[str]:
    if isinstance(spec, str):
        return {f for _, f, _, _ in string.Formatter().parse(spec) if f}
    return set().union(*(_placeholders(v) for v in spec.values())) if spec else set()


def _spec_shape_ok(spec: Any, depth: int = 0) -> bool:
    if isinstance(spec, str):
        return True
    return (
        isinstance(spec, dict)
        and depth < 2
        and all(_spec_shape_ok(v, depth + 1) for v in spec.values())
    )


def _variants(optimizers: dict[str, Any], check: _Checker, algorithm):
    for family, table in optimizers.items():
        key = f"optimizers.{family}"
        check.typed(table, dict, key, "a table with spec = ...")
        check.allowed(table, key, OPTIMIZER_KEYS)
        if "spec" not in table:
            raise check.fail(f"{key}.spec", "is required")
        spec = table["spec"]
        if not _spec_shape_ok(spec):
            raise check.fail(f"{key}.spec", "must be a spec string or a table of spec strings")
        sweep = check.typed(table.get("sweep", {}), dict, f"{key}.sweep", "a table of lists")
        overrides = check.typed(table.get("config", {}), dict, f"{key}.config", "a table")
        for name, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise check.fail(f"{key}.sweep", f"{name!r} must be a non-empty list")
        try:
            wanted = _placeholders(spec)
        except ValueError as err:
            raise check.fail(f"{key}.spec", f"bad {{placeholder}}: {err}") from None
        if wanted != set(sweep):
            raise check.fail(
                f"{key}.sweep",
                f"spec placeholders {sorted(wanted)} and sweep keys {sorted(sweep)} must match",
            )
        for combo in itertools.product(*sweep.values()):
            values = dict(zip(sweep, combo, strict=True))
            filled = _fill(spec, values)
            try:
                algorithm.build_optimizer(filled)
            except Exception as err:  # noqa: BLE001 - SpecError and optax's own TypeErrors alike
                raise check.fail(f"{key}.spec", f"{type(err).__name__}: {err}") from None
            label = ",".join(f"{k}={v}" for k, v in values.items())
            name = f"{family}[{label}]" if values else family
            yield Variant(name, family, filled, values, dict(overrides))
