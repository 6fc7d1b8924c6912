"""Interoperation with google's learned_optimization, which stays an optional dependency.

(a) `LOptAdapter` makes our learned optimizers satisfy learned_optimization's `LearnedOptimizer`
    protocol (`init(key) -> theta`, `opt_fn(theta) -> Optimizer` with init/update/get_params) without
    importing it, so its outer trainers and evaluation code can drive Optim4RL.
(b) When learned_optimization is importable, `lopt_transform("adafac_mlp" | "mlp")` wraps its
    per-parameter learned optimizers (the AdaFactor-feature MLP, and the nominal MLP that STAR builds
    on) as optax transforms, so they can serve as baselines next to Optim4RL. They need the loss:
    pass it as `tx.update(grads, state, params, value=loss)` (optax's extra-args convention).

Its only PyPI release (0.0.1, 2021) pins packages that no longer install on Python 3.11; install it
with `pip install --no-deps learned_optimization==0.0.1 gin-config dm-haiku tensorflow-cpu
tensorflow-datasets tensorboard`. It calls jax aliases removed since (`jax.tree_multimap`, ...):
they are restored, only when this module imports it. VeLO needs weights downloaded at run time and
cannot run offline, so it is not offered.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, NamedTuple

import jax
import optax

from optim4rl import networks
from optim4rl.transforms import learned


class LOptState(NamedTuple):
    """learned_optimization's optimizer-state layout: the parameters travel inside the state."""

    params: Any
    state: Any
    optax_opt_state: Any
    iteration: jax.Array


class _Optimizer:
    """learned_optimization `Optimizer` interface over an optax transform."""

    def __init__(self, tx: optax.GradientTransformation, name: str):
        self.tx = tx
        self.name = name

    def init(
        self,
        params: Any,
        model_state: Any = None,
        num_steps: int | None = None,
        key: jax.Array | None = None,
        **kwargs: Any,
    ) -> LOptState:
        del num_steps, key, kwargs
        return LOptState(params, model_state, self.tx.init(params), jax.numpy.asarray(0))

    def update(
        self,
        opt_state: LOptState,
        grad: Any,
        loss: jax.Array | None = None,
        model_state: Any = None,
        key: jax.Array | None = None,
        **kwargs: Any,
    ) -> LOptState:
        del loss, key, kwargs
        updates, inner = self.tx.update(grad, opt_state.optax_opt_state, opt_state.params)
        params = optax.apply_updates(opt_state.params, updates)
        return LOptState(params, model_state, inner, opt_state.iteration + 1)

    def get_params(self, state: LOptState) -> Any:
        return state.params

    def get_state(self, state: LOptState) -> Any:
        return state.state

    def get_params_state(self, state: LOptState) -> tuple[Any, Any]:
        return state.params, state.state

    def set_params(self, state: LOptState, params: Any) -> LOptState:
        return state._replace(params=params)


class LOptAdapter:
    """One of our learned-optimizer kinds as a learned_optimization `LearnedOptimizer`.

    theta = adapter.init(key) is the meta-parameter tree; adapter.opt_fn(theta) an Optimizer whose
    update applies -learning_rate * direction.
    """

    def __init__(
        self, kind: str = "optim4rl", learning_rate: float = 1e-3, *, grad_clip: float | None = 1.0
    ):
        self.kind = networks.check_kind(kind)
        self.learning_rate = learning_rate
        self.grad_clip = grad_clip

    def init(self, key: jax.Array) -> networks.MetaParams:
        return networks.init_meta_params(key, self.kind)

    def opt_fn(self, theta: networks.MetaParams, is_training: bool = False) -> _Optimizer:
        del is_training
        tx = learned(self.learning_rate, theta, self.kind, grad_clip=self.grad_clip)
        return _Optimizer(tx, self.name)

    @property
    def name(self) -> str:
        return f"{self.kind}_lr{self.learning_rate:g}"


def available() -> bool:
    """True when learned_optimization can be imported here."""
    return importlib.util.find_spec("learned_optimization") is not None


def _restore_removed_jax_aliases() -> None:
    """learned_optimization 0.0.1 calls jax.tree_map / tree_multimap / ..., removed in jax 0.6."""
    aliases = {
        "tree_map": jax.tree_util.tree_map,
        "tree_multimap": jax.tree_util.tree_map,
        "tree_leaves": jax.tree_util.tree_leaves,
        "tree_flatten": jax.tree_util.tree_flatten,
        "tree_unflatten": jax.tree_util.tree_unflatten,
        "tree_structure": jax.tree_util.tree_structure,
    }
    for name, fn in aliases.items():
        if not hasattr(jax, name):
            setattr(jax, name, fn)


_LOPTS = {
    "adafac_mlp": ("learned_optimization.learned_optimizers.adafac_mlp_lopt", "AdafacMLPLOpt"),
    "mlp": ("learned_optimization.learned_optimizers.mlp_lopt", "MLPLOpt"),
}


def make_lopt(name: str, **kwargs: Any) -> Any:
    """Instantiate learned_optimization's learned optimizer `name` ("adafac_mlp" or "mlp")."""
    if name not in _LOPTS:
        raise ValueError(f"unknown learned_optimization optimizer {name!r}; known: {list(_LOPTS)}")
    if not available():
        raise ImportError(
            "learned_optimization is not installed; see optim4rl.contrib.learned_optimization's "
            "docstring for the install line"
        )
    _restore_removed_jax_aliases()
    module, cls = _LOPTS[name]
    return getattr(importlib.import_module(module), cls)(**kwargs)


def lopt_transform(
    name: str,
    theta: Any = None,
    *,
    key: jax.Array | None = None,
    num_steps: int = 10_000,
    **lopt_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """A learned_optimization learned optimizer as an optax transform.

    Args:
      name: "adafac_mlp" (AdafacMLPLOpt) or "mlp" (MLPLOpt, the nominal MLP optimizer).
      theta: its meta-parameters; a random initialisation from `key` when None (no pretrained
        weights are available offline).
      num_steps: the training length the optimizer is told (a feature of adafac_mlp).

    The returned update takes `value=loss` as an extra argument; the parameters it is given replace
    the copy the wrapped optimizer keeps, so updates stay consistent with the caller's parameters.
    """
    lopt = make_lopt(name, **lopt_kwargs)
    if theta is None:
        theta = lopt.init(jax.random.PRNGKey(0) if key is None else key)
    opt = lopt.opt_fn(theta)

    def init_fn(params: optax.Params) -> Any:
        return opt.init(params, num_steps=num_steps)

    def update_fn(
        updates: optax.Updates,
        state: Any,
        params: optax.Params | None = None,
        *,
        value: jax.Array | None = None,
        **extra: Any,
    ) -> tuple[optax.Updates, Any]:
        del extra
        if params is not None:  # its states are flax dataclasses; its set_params expects tuples
            state = state.replace(params=params)
        loss = jax.numpy.asarray(0.0 if value is None else value, jax.numpy.float32)
        new_state = opt.update(state, updates, loss=loss)
        step = jax.tree_util.tree_map(
            lambda new, old: new - old, opt.get_params(new_state), opt.get_params(state)
        )
        return step, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
