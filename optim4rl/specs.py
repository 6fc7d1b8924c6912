"""Optimizer specs: optimizers written as short strings, and per-module assignments of them.

A spec is a Python-call-like string, parsed with `ast` (never evaluated):

  "adamw(learning_rate=1e-5, weight_decay=0.0)"      any optax optimizer by name
  "contrib.muon(learning_rate=1e-3)"                   optax.contrib optimizers
  "chain(clip_by_global_norm(1.0), adam(1e-3))"        nested specs are built first
  "optim4rl(learning_rate=3e-4)"                       the shipped pretrained("gridworld") Optim4RL
  "optim4rl(learning_rate=3e-4, pretrained='gridworld')"
  "optim4rl(learning_rate=3e-4, path='runs/x/meta_params.msgpack')"
  "lin(learning_rate=1e-3, seed=0)"                    a learned kind at a random initialisation

Arguments are checked when the transform is built: an unknown keyword gets close-match suggestions
(`adam(lr=1e-3)`: did you mean learning_rate?), a literal of the wrong type
(`adamw(learning_rate='1e-3')`) is refused against the optax function's annotations, and a number
out of range (not finite, a negative learning rate, eps or weight decay, b1 or b2 outside [0, 1)) is
refused, so none waits for the first update. An error in a nested spec is reported once, as is.

A per-module assignment maps patterns over flax parameter paths to specs, with an optional
"default" for everything else, and becomes one `optax.partition`. Its canonical form is `ModuleSpecs`,
an ordered tuple of (pattern, spec) pairs (hashable, so frozen configs can hold it); `module_specs`
converts the other forms at the edges: a mapping (TOML tables, Python dicts) or "PATTERN=SPEC" strings
(command lines):

  (("context_encoder", "adamw(learning_rate=1e-5)"), ("default", "adamw(learning_rate=3e-4)"))
  {"context_encoder": "adamw(learning_rate=1e-5)", "default": "adamw(learning_rate=3e-4)"}
  ["context_encoder=adamw(learning_rate=1e-5)", "default=adamw(learning_rate=3e-4)"]

A path like ("params", "context_encoder", "Dense_0", "kernel") is written
"params/context_encoder/Dense_0/kernel". A pattern is one or more '/'-separated shell globs; it
matches a path when it matches a contiguous run of the path's components, so "context_encoder"
matches every parameter under any module of that name and "policy/*encoder*" narrows it. The first
pattern that matches (in the mapping's order) wins.
"""

from __future__ import annotations

import ast
import collections.abc
import difflib
import fnmatch
import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax

from optim4rl import checkpoint, networks
from optim4rl.transforms import learned

DEFAULT = "default"
Spec = str | optax.GradientTransformation | Mapping[str, Any]
ModuleSpecs = tuple[tuple[str, Spec], ...]


class SpecError(ValueError):
    """An optimizer spec that cannot be built: unknown name, bad arguments or unmatched patterns."""


def parse_spec(text: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """Parse "name(arg, key=value, ...)" into (name, args, kwargs).

    Values must be literals or nested specs (calls), which are built into transforms.
    """
    source = text.strip()
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError as err:
        raise SpecError(f"optimizer spec {text!r} is not of the form name(key=value, ...)") from err
    call = node if isinstance(node, ast.Call) else None
    func = call.func if call else node
    name = _dotted_name(func)
    if name is None:
        raise SpecError(f"optimizer spec {text!r} does not start with an optimizer name")
    args, kwargs = [], {}
    try:
        if call:
            args = [_argument(a, source) for a in call.args]
            for kw in call.keywords:
                if kw.arg is None:
                    raise SpecError(f"optimizer spec {text!r}: '**' is not allowed")
                kwargs[kw.arg] = _argument(kw.value, source)
    except SpecError:
        raise  # a nested spec's own error, already naming that spec: not wrapped again
    except ValueError as err:
        raise SpecError(
            f"optimizer spec {text!r}: arguments must be literals (numbers, strings, ...): {err}"
        ) from err
    return name, tuple(args), kwargs


def _argument(node: ast.expr, source: str) -> Any:
    """A literal, or a nested optimizer spec (a call, as written in `source`) built into its
    transform."""
    if isinstance(node, ast.Call):
        return from_spec(ast.get_source_segment(source, node) or ast.unparse(node))
    return ast.literal_eval(node)


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def optax_optimizer_names() -> list[str]:
    """Names (with "contrib." for optax.contrib) of optax functions a spec may call."""
    names = [n for n in dir(optax) if n[0].islower() and callable(getattr(optax, n))]
    names += [
        f"contrib.{n}"
        for n in dir(optax.contrib)
        if n[0].islower() and callable(getattr(optax.contrib, n))
    ]
    return sorted(names)


def from_spec(spec: Spec) -> optax.GradientTransformation:
    """Build an optimizer from a spec string, a per-module mapping, or pass a transform through."""
    if isinstance(spec, optax.GradientTransformation):
        return spec
    if isinstance(spec, str):
        name, args, kwargs = parse_spec(spec)
        name = name.removeprefix("optax.")
        if name in networks.KINDS:
            return _learned_from_spec(name, args, kwargs, spec)
        return _optax_from_spec(name, args, kwargs, spec)
    if isinstance(spec, Mapping | tuple | list):
        return per_module(spec)
    raise SpecError(
        f"an optimizer spec is a string, a transform or a per-module assignment, not {type(spec)}"
    )


def _optax_from_spec(
    name: str, args: tuple, kwargs: dict, text: str
) -> optax.GradientTransformation:
    owner, attr = (optax.contrib, name[8:]) if name.startswith("contrib.") else (optax, name)
    fn = getattr(owner, attr, None) if attr[:1].islower() else None
    if fn is None or not callable(fn):
        known = list(networks.KINDS) + optax_optimizer_names()
        close = difflib.get_close_matches(name, known, n=4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SpecError(f"unknown optimizer {name!r} in spec {text!r}{hint}")
    signature = inspect.signature(fn)
    names = [
        n
        for n, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = [k for k in kwargs if k not in signature.parameters]
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        raise SpecError(_unknown_keywords(text, f"optax.{name}", unknown, names))
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as err:
        raise SpecError(f"spec {text!r}: {err}; optax.{name} takes {', '.join(names)}") from err
    _check_types(fn, bound.arguments, text, f"optax.{name}")
    _check_ranges(bound.arguments, text, f"optax.{name}")
    tx = fn(*args, **kwargs)
    if not isinstance(tx, optax.GradientTransformation):
        raise SpecError(f"optax.{name} does not build an optimizer (spec {text!r})")
    return tx


_LEARNED_ARGS = ("learning_rate", "pretrained", "path", "seed", "grad_clip", "eps")
_LEARNED_TYPES = {
    "learning_rate": (int, float),
    "pretrained": (str,),
    "path": (str,),
    "seed": (int,),
    "grad_clip": (int, float, type(None)),
    "eps": (int, float),
}


# Other libraries' names of optax's arguments (PyTorch, Keras, ...), suggested where difflib is not.
ALIASES = {
    "lr": "learning_rate",
    "learningrate": "learning_rate",
    "step_size": "learning_rate",
    "beta1": "b1",
    "beta_1": "b1",
    "beta2": "b2",
    "beta_2": "b2",
    "epsilon": "eps",
    "wd": "weight_decay",
    "decoupled_weight_decay": "weight_decay",
}

# The range of a number argument of these names, for every optimizer: (low, high, text); a
# value must satisfy low <= value < high (None: unbounded).
RANGES = {
    "learning_rate": (0.0, None, ">= 0"),
    "b1": (0.0, 1.0, "in [0, 1)"),
    "b2": (0.0, 1.0, "in [0, 1)"),
    "eps": (0.0, None, ">= 0"),
    "eps_root": (0.0, None, ">= 0"),
    "weight_decay": (0.0, None, ">= 0"),
}


def _check_ranges(arguments: Mapping[str, Any], text: str, owner: str) -> None:
    """SpecError for the first number argument that is not finite or is out of its `RANGES`."""
    for key, value in arguments.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise SpecError(f"spec {text!r}: {key}={value!r} is not a finite number ({owner})")
        low, high, rule = RANGES.get(key, (None, None, ""))
        if (low is not None and value < low) or (high is not None and value >= high):
            raise SpecError(f"spec {text!r}: {key}={value!r} is out of range ({owner}: {rule})")


def _unknown_keywords(text: str, owner: str, unknown: Sequence[str], known: Sequence[str]) -> str:
    """A short message: each unknown keyword with its close matches, then what `owner` takes."""
    parts = []
    for k in unknown:
        alias = ALIASES.get(k.lower())
        close = [alias] if alias in known else []
        close = close or difflib.get_close_matches(k, known, n=3, cutoff=0.6)
        parts.append(f"{k!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return f"spec {text!r}: {owner} has no argument {', '.join(parts)}; it takes {shown}"


def _annotations(fn: Any) -> dict[str, Any]:
    """Each parameter's annotation, resolved one by one (optax's string annotations name types
    that are not all importable from its modules; an unresolvable one is left out, so unchecked)."""
    out = {}
    namespace = getattr(inspect.unwrap(fn), "__globals__", {})
    for name, param in inspect.signature(fn).parameters.items():
        ann = param.annotation
        if isinstance(ann, str):
            holder = types.SimpleNamespace(__annotations__={name: ann})
            try:
                ann = typing.get_type_hints(holder, globalns=namespace)[name]
            except Exception:
                continue
        if ann is not inspect.Parameter.empty:
            out[name] = ann
    return out


def _accepts(ann: Any, value: Any) -> bool:
    """Whether a literal from a spec (number, string, bool, None, tuple, list, dict or a built
    transform) can be an argument annotated `ann`; permissive for annotations it cannot judge."""
    if ann is Any:
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(a, value) for a in typing.get_args(ann))
    if origin is typing.Literal:
        return value in typing.get_args(ann)
    if ann is None or ann is type(None):
        return value is None
    if ann is float or ann is complex:
        return isinstance(value, int | float | complex) and not isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is collections.abc.Callable or ann is collections.abc.Callable:
        return callable(value)
    cls = origin or ann
    if isinstance(cls, type) and cls is not object:
        if cls.__module__.startswith(("jax", "numpy")):
            return False  # arrays and numpy scalars: a spec literal never is one
        return isinstance(value, cls)
    return True


def _check_types(fn: Any, arguments: Mapping[str, Any], text: str, owner: str) -> None:
    """SpecError for the first argument whose literal type the annotation of `fn` rules out."""
    annotations = _annotations(fn)
    kinds = {n: p.kind for n, p in inspect.signature(fn).parameters.items()}
    for key, given in arguments.items():
        if kinds.get(key) == inspect.Parameter.VAR_KEYWORD:
            continue
        ann = annotations.get(key)
        values = given if kinds.get(key) == inspect.Parameter.VAR_POSITIONAL else (given,)
        value = next((v for v in values if ann is not None and not _accepts(ann, v)), None)
        if value is not None:
            raise SpecError(
                f"spec {text!r}: {key}={value!r} ({type(value).__name__}) is not accepted by "
                f"{owner} (it takes {_type_name(ann)})"
            )


def _type_name(ann: Any) -> str:
    """'float | Array | Callable' rather than the full typing repr."""
    args = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else ()
    parts = args or (ann,)
    names = [getattr(typing.get_origin(a) or a, "__name__", str(a)) for a in parts]
    names = [n.rsplit(".", 1)[-1] for n in names]
    return " | ".join(dict.fromkeys("None" if n == "NoneType" else n for n in names))


def _learned_from_spec(
    kind: str, args: tuple, kwargs: dict, text: str
) -> optax.GradientTransformation:
    if len(args) > 1:
        raise SpecError(f"spec {text!r}: only learning_rate may be given by position")
    if args:
        if "learning_rate" in kwargs:
            raise SpecError(f"spec {text!r}: learning_rate given twice")
        kwargs = {"learning_rate": args[0], **kwargs}
    unknown = sorted(set(kwargs) - set(_LEARNED_ARGS))
    if unknown:
        raise SpecError(_unknown_keywords(text, kind, unknown, _LEARNED_ARGS))
    if "learning_rate" not in kwargs:
        raise SpecError(f"spec {text!r}: learning_rate is required")
    for key, value in kwargs.items():
        want = _LEARNED_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, want):
            allowed = " or ".join("None" if t is type(None) else t.__name__ for t in want)
            raise SpecError(
                f"spec {text!r}: {key}={value!r} ({type(value).__name__}) is not accepted by "
                f"{kind} (it takes {allowed})"
            )
    _check_ranges(kwargs, text, kind)
    if kwargs.get("grad_clip") is not None and kwargs["grad_clip"] <= 0:
        raise SpecError(f"spec {text!r}: grad_clip={kwargs['grad_clip']!r} must be > 0 or None")
    sources = [k for k in ("pretrained", "path", "seed") if k in kwargs]
    if len(sources) > 1:
        raise SpecError(f"spec {text!r}: give only one of pretrained=, path=, seed=")
    if not sources:
        if kind != "optim4rl":
            raise SpecError(f"spec {text!r}: give pretrained=NAME, path=FILE or seed=INT")
        kwargs["pretrained"] = "gridworld"
        sources = ["pretrained"]
    hyper: dict[str, Any] = {}
    try:
        if sources[0] == "seed":
            meta_params = networks.init_meta_params(jax.random.key(int(kwargs["seed"])), kind)
        else:
            if sources[0] == "pretrained":
                meta_params, header = checkpoint.pretrained(kwargs["pretrained"])
            else:
                meta_params, header = checkpoint.load_meta_params(kwargs["path"], kind)
            if header["kind"] != kind:
                raise SpecError(f"spec {text!r}: checkpoint holds a {header['kind']!r} optimizer")
            hyper = header.get("hyperparameters", {})
    except (LookupError, FileNotFoundError, checkpoint.CheckpointError) as err:
        raise SpecError(f"spec {text!r}: {err}") from err
    return learned(
        kwargs["learning_rate"],
        meta_params,
        kind,
        grad_clip=kwargs.get("grad_clip", hyper.get("grad_clip", 1.0)),
        eps=kwargs.get("eps", hyper.get("eps", 1e-8)),
    )


def param_path(key_path: Sequence[Any]) -> str:
    """A pytree key path as "a/b/c" (dict keys, attribute names and sequence indices)."""
    parts = []
    for k in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def param_paths(params: Any) -> list[str]:
    """Every leaf's path in a parameter tree, as matched by per-module patterns."""
    return [param_path(k) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def pattern_matches(pattern: str, path: str) -> bool:
    """True when the '/'-separated globs of `pattern` match a contiguous run of `path`'s parts."""
    want, parts = pattern.strip("/").split("/"), path.split("/")
    return any(
        all(fnmatch.fnmatchcase(parts[i + j], w) for j, w in enumerate(want))
        for i in range(len(parts) - len(want) + 1)
    )


def label_params(params: Any, patterns: Sequence[str], default: str | None = DEFAULT) -> Any:
    """A tree like `params` whose leaves are the first pattern each path matches (else `default`).

    Raises SpecError when a pattern matches no parameter, when every parameter it matches is taken
    by an earlier pattern (shadowed), or when a parameter matches no pattern and there is no default.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [param_path(k) for k, _ in flat]
    labels = [next((p for p in patterns if pattern_matches(p, path)), default) for path in paths]
    for p in patterns:
        if p in labels:
            continue
        matched = [path for path in paths if pattern_matches(p, path)]
        if matched:
            winners = sorted({labels[paths.index(path)] for path in matched})
            raise SpecError(
                f"optimizer pattern {p!r} is shadowed: the {len(matched)} parameter(s) it matches "
                f"(e.g. {matched[0]}) all match the earlier pattern(s) {winners}, and the first "
                "match wins; put it before them"
            )
        raise SpecError(
            f"optimizer pattern {p!r} matches no parameter; parameter paths look like "
            f"{paths[:4]} ({len(paths)} in all)"
        )
    unmatched = [path for path, label in zip(paths, labels, strict=True) if label is None]
    if unmatched:
        raise SpecError(
            f"{len(unmatched)} parameter(s) match no pattern and no {DEFAULT!r} is given: "
            f"{unmatched[:6]}"
        )
    return jax.tree_util.tree_unflatten(treedef, labels)


def module_specs(assignments: Mapping[str, Spec] | Sequence[Any]) -> ModuleSpecs:
    """The canonical per-module form, an ordered tuple of (pattern, spec) pairs, from any of:
    a mapping {pattern: spec}, a sequence of (pattern, spec) pairs, or "PATTERN=SPEC" strings.

    Checks that every pattern is a non-empty string given once; "default" (everything else) may
    appear anywhere and is matched last.
    """
    if isinstance(assignments, Mapping):
        pairs = list(assignments.items())
    elif isinstance(assignments, Sequence) and not isinstance(assignments, str):
        pairs = [parse_assignment(a) if isinstance(a, str) else a for a in assignments]
    else:
        raise SpecError(f"a per-module assignment is a mapping or pairs, not {assignments!r}")
    out = []
    for pair in pairs:
        if not (isinstance(pair, Sequence) and len(pair) == 2):
            raise SpecError(f"per-module entry {pair!r} is not a (pattern, spec) pair")
        pattern, spec = pair
        if not isinstance(pattern, str) or not pattern.strip("/"):
            raise SpecError(f"per-module pattern {pattern!r} must be a non-empty string")
        out.append((pattern, spec))
    if not out:
        raise SpecError("a per-module assignment needs at least one entry")
    patterns = [p for p, _ in out]
    repeated = sorted({p for p in patterns if patterns.count(p) > 1})
    if repeated:
        raise SpecError(f"per-module pattern(s) {repeated} given more than once")
    return tuple(out)


def parse_assignment(text: str) -> tuple[str, str]:
    """ "PATTERN=SPEC" (a command-line argument) as (pattern, spec); the first '=' splits."""
    pattern, sep, spec = text.partition("=")
    if not sep or not pattern.strip() or not spec.strip():
        raise SpecError(f"{text!r} is not of the form PATTERN=SPEC")
    return pattern.strip(), spec.strip()


def assign(specs: ModuleSpecs, pattern: str, spec: Spec) -> ModuleSpecs:
    """`specs` with `pattern`'s spec replaced, or with (pattern, spec) put first when new, so that
    a new, narrower pattern wins over the broader ones already there."""
    specs = module_specs(specs)
    if any(p == pattern for p, _ in specs):
        return tuple((p, spec if p == pattern else s) for p, s in specs)
    return module_specs(((pattern, spec), *specs))


def per_module(assignments: Mapping[str, Spec] | Sequence[Any]) -> optax.GradientTransformation:
    """One optimizer per group of parameters: `optax.partition` over path patterns (see module doc).

    `assignments` is anything `module_specs` accepts."""
    pairs = module_specs(assignments)
    patterns = [p for p, _ in pairs if p != DEFAULT]
    transforms = {label: from_spec(spec) for label, spec in pairs}
    default = DEFAULT if DEFAULT in transforms else None
    return optax.partition(transforms, lambda params: label_params(params, patterns, default))
