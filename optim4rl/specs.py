"""Optimizer specs: optimizers written as short strings, and per-module assignments of them.

A spec is a Python-call-like string, parsed with `ast` (never evaluated):

  "adamw(learning_rate=1e-5, weight_decay=0.0)"      any optax optimizer by name
  "contrib.muon(learning_rate=1e-3)"                   optax.contrib optimizers
  "chain(clip_by_global_norm(1.0), adam(1e-3))"        nested specs are built first
  "optim4rl(learning_rate=3e-4)"                       the shipped pretrained("gridworld") Optim4RL
  "optim4rl(learning_rate=3e-4, pretrained='gridworld')"
  "optim4rl(learning_rate=3e-4, path='runs/x/meta_params.msgpack')"
  "lin(learning_rate=1e-3, seed=0)"                    a learned kind at a random initialisation

A per-module assignment maps patterns over flax parameter paths to specs, with an optional
"default" for everything else, and becomes one `optax.partition`:

  {"context_encoder": "adamw(learning_rate=1e-5)", "default": "adamw(learning_rate=3e-4)"}

A path like ("params", "context_encoder", "Dense_0", "kernel") is written
"params/context_encoder/Dense_0/kernel". A pattern is one or more '/'-separated shell globs; it
matches a path when it matches a contiguous run of the path's components, so "context_encoder"
matches every parameter under any module of that name and "policy/*encoder*" narrows it. The first
pattern that matches (in the mapping's order) wins.
"""

from __future__ import annotations

import ast
import difflib
import fnmatch
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax

from optim4rl import checkpoint, networks
from optim4rl.transforms import learned

DEFAULT = "default"
Spec = str | optax.GradientTransformation | Mapping[str, Any]


class SpecError(ValueError):
    """An optimizer spec that cannot be built: unknown name, bad arguments or unmatched patterns."""


def parse_spec(text: str) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """Parse "name(arg, key=value, ...)" into (name, args, kwargs).

    Values must be literals or nested specs (calls), which are built into transforms.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
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
            args = [_argument(a) for a in call.args]
            for kw in call.keywords:
                if kw.arg is None:
                    raise SpecError(f"optimizer spec {text!r}: '**' is not allowed")
                kwargs[kw.arg] = _argument(kw.value)
    except ValueError as err:
        raise SpecError(
            f"optimizer spec {text!r}: arguments must be literals (numbers, strings, ...): {err}"
        ) from err
    return name, tuple(args), kwargs


def _argument(node: ast.expr) -> Any:
    """A literal, or a nested optimizer spec (a call) built into its transform."""
    if isinstance(node, ast.Call):
        return from_spec(ast.unparse(node))
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
    if isinstance(spec, Mapping):
        return per_module(spec)
    raise SpecError(f"an optimizer spec is a string, a mapping or a transform, not {type(spec)}")


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
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise SpecError(
            f"bad arguments in spec {text!r} ({err}); optax.{name} takes {signature}"
        ) from err
    tx = fn(*args, **kwargs)
    if not isinstance(tx, optax.GradientTransformation):
        raise SpecError(f"optax.{name} does not build an optimizer (spec {text!r})")
    return tx


_LEARNED_ARGS = ("learning_rate", "pretrained", "path", "seed", "grad_clip", "eps")


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
        raise SpecError(
            f"spec {text!r}: unknown argument(s) {', '.join(unknown)}; {kind} takes "
            f"{', '.join(_LEARNED_ARGS)}"
        )
    if "learning_rate" not in kwargs:
        raise SpecError(f"spec {text!r}: learning_rate is required")
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

    Raises SpecError when a pattern matches no parameter, or when a parameter matches no pattern
    and there is no default.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [param_path(k) for k, _ in flat]
    labels = [next((p for p in patterns if pattern_matches(p, path)), default) for path in paths]
    unused = [p for p in patterns if p not in labels]
    if unused:
        raise SpecError(
            f"optimizer pattern(s) {unused} match no parameter; parameter paths look like "
            f"{paths[:4]} ({len(paths)} in all)"
        )
    unmatched = [path for path, label in zip(paths, labels, strict=True) if label is None]
    if unmatched:
        raise SpecError(
            f"{len(unmatched)} parameter(s) match no pattern and no {DEFAULT!r} is given: "
            f"{unmatched[:6]}"
        )
    return jax.tree_util.tree_unflatten(treedef, labels)


def per_module(assignments: Mapping[str, Spec]) -> optax.GradientTransformation:
    """One optimizer per group of parameters: `optax.partition` over path patterns (see module doc)."""
    if not assignments:
        raise SpecError("a per-module optimizer mapping needs at least one entry")
    patterns = [p for p in assignments if p != DEFAULT]
    for p in patterns:
        if not isinstance(p, str) or not p.strip("/"):
            raise SpecError(f"per-module pattern {p!r} must be a non-empty string")
    transforms = {label: from_spec(spec) for label, spec in assignments.items()}
    default = DEFAULT if DEFAULT in assignments else None
    return optax.partition(transforms, lambda params: label_params(params, patterns, default))
