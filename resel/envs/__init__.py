"""POMDP task suites on Brax and gymnax behind one gymnax-style interface.

    from resel import envs
    env, params = envs.make("Pendulum-P")
    obs, state = env.reset(key, params)
    obs, state, reward, done, info = env.step(key, state, action, params)

`done` = episode ended (termination or time-out, already auto-reset); bootstrap with
`info["terminated"]`; `info["truncated"]` marks time-outs; `info["final_obs"]` is the last
observation of the ended episode. See docs/envs.md for every suite.
"""

from resel.envs import suites  # noqa: F401  (registers the built-in tasks)
from resel.envs.core import Environment, Wrapper
from resel.envs.registry import FAMILIES, family_of, heldout_params, make, names, register, takes
from resel.envs.spaces import Box, Discrete
from resel.envs.wrappers import ObservationMask, ObserveReward

__all__ = [
    "FAMILIES",
    "Box",
    "Discrete",
    "Environment",
    "ObservationMask",
    "ObserveReward",
    "Wrapper",
    "family_of",
    "heldout_params",
    "make",
    "names",
    "register",
    "takes",
]
