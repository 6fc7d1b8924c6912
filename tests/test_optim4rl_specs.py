"""Optimizer specs: strings to optax transforms, per-module assignments, and their errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim4rl
from optim4rl.specs import pattern_matches


def _step(tx, params, grads):
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates


def test_optax_spec_equals_the_optax_optimizer():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}
    got = _step(optim4rl.from_spec("adamw(learning_rate=1e-2, weight_decay=0.1)"), params, grads)
    want = _step(optax.adamw(1e-2, weight_decay=0.1), params, grads)
    np.testing.assert_allclose(got["w"], want["w"])
    got = _step(optim4rl.from_spec("optax.sgd(0.5)"), params, grads)
    np.testing.assert_allclose(got["w"], -0.5 * grads["w"])


def test_nested_specs_compose_like_optax_chain():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([3.0, 4.0])}  # global norm 5
    spec = "chain(clip_by_global_norm(1.0), sgd(learning_rate=0.5))"
    got = _step(optim4rl.from_spec(spec), params, grads)
    np.testing.assert_allclose(got["w"], -0.5 * grads["w"] / 5.0, rtol=1e-6)
    with pytest.raises(optim4rl.SpecError, match="unknown optimizer 'clip_by_norm'"):
        optim4rl.from_spec("chain(clip_by_norm(1.0), sgd(0.1))")


def test_learned_spec_with_seed_and_path(tmp_path):
    mp = optim4rl.init_meta_params(jax.random.key(4), "lin")
    path = optim4rl.save_meta_params(
        tmp_path / "lin.msgpack", mp, hyperparameters={"grad_clip": 0.5}
    )
    g = jnp.array([0.9, -0.1])
    got = _step(optim4rl.from_spec(f"lin(1e-3, path='{path}')"), g, g)
    want = _step(optim4rl.learned(1e-3, mp, grad_clip=0.5), g, g)  # clip taken from the header
    np.testing.assert_allclose(got, want)
    got = _step(optim4rl.from_spec("optim4rl(learning_rate=1e-3, seed=4)"), g, g)
    want = _step(optim4rl.optim4rl(1e-3, optim4rl.init_meta_params(jax.random.key(4))), g, g)
    np.testing.assert_allclose(got, want)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("adamm(learning_rate=1e-3)", "unknown optimizer 'adamm'.*did you mean adam"),
        (
            "adamw(lr=1e-3)",
            "optax.adamw has no argument 'lr' \\(did you mean learning_rate\\?\\); it takes "
            "learning_rate, b1",
        ),
        (
            "adamw(learnig_rate=1e-3)",
            "no argument 'learnig_rate' \\(did you mean learning_rate\\?\\)",
        ),
        ("adamw(learning_rate='1e-3')", "learning_rate='1e-3' \\(str\\) is not accepted by optax"),
        ("adam(1e-3, b1='0.9')", "b1='0.9' \\(str\\)"),
        ("rmsprop(1e-3, centered=1)", "centered=1 \\(int\\) .* \\(it takes bool\\)"),
        ("chain(clip_by_global_norm(1.0), 3)", "args=3 \\(int\\) .*GradientTransformation"),
        ("sgd(1, 2, 3, 4, 5)", "too many positional arguments; optax.sgd takes learning_rate"),
        ("optim4rl(3e-4, grad_clip='x')", "grad_clip='x' \\(str\\) is not accepted by optim4rl"),
        ("optim4rl(learning_rate=True)", "learning_rate=True \\(bool\\)"),
        ("lin(1e-3, seed=0.5)", "seed=0.5 \\(float\\)"),
        ("adamw(learning_rate=x)", "arguments must be literals"),
        ("adamw(learning_rate=1e-3", "not of the form"),
        ("optim4rl(learning_rate=1e-3, pretrained='nope')", "no pretrained optimizer named 'nope'"),
        ("optim4rl(learning_rate=1e-3, path='/no/such.msgpack')", "no meta-parameter checkpoint"),
        ("optim4rl(learning_rate=1e-3, seed=0, path='x')", "only one of"),
        ("optim4rl(learning_rate=1e-3, beta=2)", "optim4rl has no argument 'beta'"),
        ("optim4rl(learning_rate=1e-3, seeed=2)", "'seeed' \\(did you mean seed\\?\\)"),
        ("lin(learning_rate=1e-3)", "pretrained=NAME, path=FILE or seed=INT"),
        ("optim4rl(seed=0)", "learning_rate is required"),
    ],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(optim4rl.SpecError, match=message) as err:
        optim4rl.from_spec(spec)  # at build time, before any update
    assert len(str(err.value)) < 300  # short: no whole optax signature


def test_valid_literals_of_every_annotated_kind_pass():
    for spec in [
        "sgd(0.1, momentum=0.9, nesterov=True)",
        "adamw(1e-3, mask=None, mu_dtype='bfloat16')",
        "chain(clip_by_global_norm(1), adam(1e-3))",  # an int where a float is annotated
        "contrib.muon(learning_rate=1e-3)",
    ]:
        assert isinstance(optim4rl.from_spec(spec), optax.GradientTransformation)


def test_pattern_matching_on_paths():
    path = "params/policy/context_encoder/Dense_0/kernel"
    assert pattern_matches("context_encoder", path)
    assert pattern_matches("policy/context_encoder", path)
    assert pattern_matches("*encoder*/Dense_*", path)
    assert not pattern_matches("encoder", path)  # whole components, not substrings
    assert not pattern_matches("context_encoder/policy", path)


class _Agent(nn.Module):
    @nn.compact
    def __call__(self, x):
        e = nn.Dense(3, name="context_encoder")(x)
        o = nn.Dense(3, name="obs_encoder")(x)
        return nn.Dense(1, name="head")(jnp.concatenate([e, o], -1))


@pytest.fixture(scope="module")
def agent_params():
    return _Agent().init(jax.random.key(0), jnp.ones((1, 2)))


def test_per_module_assigns_each_group_its_optimizer(agent_params):
    spec = {
        "context_encoder": "sgd(learning_rate=0.1)",
        "*_encoder": "sgd(learning_rate=1.0)",  # catches obs_encoder only: first match wins
        "default": "sgd(learning_rate=0.0)",
    }
    labels = optim4rl.label_params(agent_params, [k for k in spec if k != "default"])
    assert labels["params"]["context_encoder"]["kernel"] == "context_encoder"
    assert labels["params"]["obs_encoder"]["bias"] == "*_encoder"
    assert labels["params"]["head"]["kernel"] == "default"
    grads = jax.tree_util.tree_map(jnp.ones_like, agent_params)
    u = _step(optim4rl.from_spec(spec), agent_params, grads)["params"]
    np.testing.assert_allclose(u["context_encoder"]["kernel"], -0.1)
    np.testing.assert_allclose(u["obs_encoder"]["kernel"], -1.0)
    np.testing.assert_allclose(u["head"]["kernel"], 0.0)


def test_per_module_errors(agent_params):
    tx = optim4rl.from_spec({"context_encdoer": "sgd(0.1)", "default": "sgd(0.1)"})
    with pytest.raises(optim4rl.SpecError, match=r"'context_encdoer' matches no parameter"):
        tx.init(agent_params)
    tx = optim4rl.from_spec(
        {"*_encoder": "sgd(0.1)", "obs_encoder": "sgd(1.0)", "default": "sgd(0)"}
    )
    with pytest.raises(optim4rl.SpecError, match=r"'obs_encoder' is shadowed.*\['\*_encoder'\]"):
        tx.init(agent_params)
    tx = optim4rl.from_spec({"context_encoder": "sgd(0.1)"})
    with pytest.raises(optim4rl.SpecError, match="4 parameter\\(s\\) match no pattern"):
        tx.init(agent_params)
    with pytest.raises(optim4rl.SpecError, match="unknown optimizer"):
        optim4rl.from_spec({"head": "nosuch(1)"})


def test_the_four_assignment_forms_become_one_canonical_tuple(agent_params):
    pairs = (("context_encoder", "sgd(0.1)"), ("default", "sgd(1.0)"))
    assert optim4rl.module_specs(dict(pairs)) == pairs
    assert optim4rl.module_specs([list(p) for p in pairs]) == pairs  # JSON / TOML arrays
    assert optim4rl.module_specs(["context_encoder=sgd(0.1)", "default = sgd(1.0)"]) == pairs
    assert optim4rl.module_specs(pairs) == pairs
    grads = jax.tree_util.tree_map(jnp.ones_like, agent_params)
    u = _step(optim4rl.from_spec(pairs), agent_params, grads)["params"]
    np.testing.assert_allclose(u["context_encoder"]["kernel"], -0.1)
    np.testing.assert_allclose(u["head"]["kernel"], -1.0)
    # assign: replace in place, or put a new (narrower) pattern first
    assert optim4rl.assign(pairs, "default", "sgd(2.0)")[1] == ("default", "sgd(2.0)")
    assert optim4rl.assign(pairs, "Dense_0", "adam(1e-3)")[0] == ("Dense_0", "adam(1e-3)")
    with pytest.raises(optim4rl.SpecError, match="given more than once"):
        optim4rl.module_specs([("head", "sgd(1)"), ("head", "sgd(2)")])
    with pytest.raises(optim4rl.SpecError, match="not of the form PATTERN=SPEC"):
        optim4rl.module_specs(["context_encoder:sgd(0.1)"])


@pytest.mark.parametrize(
    "spec, argument, rule",
    [
        ("adamw(learning_rate=1e400)", "learning_rate=inf", "not a finite number"),
        ("adam(learning_rate=-1e-3)", "learning_rate=-0.001", ">= 0"),
        ("adam(1e-3, b1=2.0)", "b1=2.0", "in [0, 1)"),
        ("adam(1e-3, b2=1.0)", "b2=1.0", "in [0, 1)"),
        ("adam(1e-3, b2=-0.5)", "b2=-0.5", "in [0, 1)"),
        ("adam(1e-3, eps=-1e-8)", "eps=-1e-08", ">= 0"),
        ("adamw(1e-3, weight_decay=-0.1)", "weight_decay=-0.1", ">= 0"),
        ("optim4rl(learning_rate=-1e-3)", "learning_rate=-0.001", ">= 0"),
        ("lin(learning_rate=1e400, seed=0)", "learning_rate=inf", "not a finite number"),
    ],
)
def test_numbers_out_of_range_are_refused_at_build(spec, argument, rule):
    with pytest.raises(optim4rl.SpecError) as info:
        optim4rl.from_spec(spec)
    message = str(info.value)
    assert message.startswith(f"spec {spec!r}: {argument} ")  # names the spec and the argument
    assert rule in message


def test_numbers_at_the_edges_of_their_range_pass():
    for spec in ("adam(learning_rate=0.0, b1=0.0, b2=0.0, eps=0.0)", "adamw(1e-3, weight_decay=0)"):
        assert isinstance(optim4rl.from_spec(spec), optax.GradientTransformation)


@pytest.mark.parametrize(
    "spec, keyword, suggestion",
    [
        ("adam(lr=1)", "lr", "learning_rate"),
        ("adam(1e-3, beta1=0.9)", "beta1", "b1"),
        ("adam(1e-3, epsilon=1e-8)", "epsilon", "eps"),
        ("adamw(1e-3, wd=0.1)", "wd", "weight_decay"),
        ("optim4rl(lr=1e-3)", "lr", "learning_rate"),
    ],
)
def test_common_aliases_get_the_optax_name(spec, keyword, suggestion):
    with pytest.raises(optim4rl.SpecError, match=rf"'{keyword}' \(did you mean {suggestion}\?\)"):
        optim4rl.from_spec(spec)


@pytest.mark.parametrize(
    "spec",
    [
        "chain(clip_by_global_norm(1.0), adam(lr=1e-3))",
        {"context_encoder": "adam(lr=1e-3)", "default": "sgd(0.1)"},
        [("context_encoder", "chain(clip(1.0), adam(lr=1e-3))"), ("default", "sgd(0.1)")],
    ],
)
def test_an_error_in_a_nested_spec_is_reported_once(spec):
    with pytest.raises(optim4rl.SpecError) as info:
        optim4rl.from_spec(spec)
    message = str(info.value)
    assert message.startswith("spec 'adam(lr=1e-3)': optax.adam has no argument 'lr'")
    assert message.count("did you mean") == 1 and message.count("adam(lr=1e-3)") == 1
