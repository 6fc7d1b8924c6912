"""The LPG gridworlds (Oh et al., 2020) used by Optim4RL, as gymnax environments.

A map of `rows x cols` cells with walls on its border. `k` objects, each with a reward, a
termination probability and a respawn probability. 9 actions: stay and the 8 compass moves; a
move into a wall leaves the agent where it is. Walking onto a present object collects it: its
reward is paid, the episode terminates with its termination probability, and the object is gone
until it respawns (each step, with its respawn probability, at a uniformly random non-wall cell,
which may hold the agent or another object, as in the authors' release).
The episode also ends at the horizon `max_steps_in_episode`; gymnax's `step` auto-resets.

Observation: float32 `(rows, cols, k + 1)`, binary; channel `i < k` marks object `i` when present,
channel `k` marks the agent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

# stay, N, NE, E, SE, S, SW, W, NW as (row, col) offsets
MOVES = jnp.array(
    [[0, 0], [-1, 0], [-1, 1], [0, 1], [1, 1], [1, 0], [1, -1], [0, -1], [-1, -1]], jnp.int32
)


@struct.dataclass
class EnvState:
    agent: jax.Array  # (2,) int32 row, col
    objects: jax.Array  # (k, 2) int32 row, col (meaningless while absent)
    present: jax.Array  # (k,) bool
    time: jax.Array  # () int32 steps since reset


@struct.dataclass
class EnvParams:
    walls: jax.Array  # (rows, cols) bool
    rewards: jax.Array  # (k,) float32
    terminate_prob: jax.Array  # (k,) float32
    respawn_prob: jax.Array  # (k,) float32
    max_steps_in_episode: int = 50


def border_walls(rows: int, cols: int) -> jax.Array:
    """(rows, cols) bool map that is True on the outer ring."""
    walls = jnp.zeros((rows, cols), bool)
    return walls.at[0, :].set(True).at[-1, :].set(True).at[:, 0].set(True).at[:, -1].set(True)


class GridWorld(environment.Environment[EnvState, EnvParams]):
    """Gridworld with `num_objects` collectible objects on a `rows x cols` map (walls included)."""

    def __init__(self, rows: int, cols: int, num_objects: int, *, name: str = "GridWorld"):
        super().__init__()
        if rows < 3 or cols < 3 or num_objects < 1:
            raise ValueError(f"GridWorld needs rows, cols >= 3 and >= 1 object, got {rows, cols}")
        self.rows, self.cols, self.num_objects = rows, cols, num_objects
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> EnvParams:
        k = self.num_objects
        return EnvParams(
            walls=border_walls(self.rows, self.cols),
            rewards=jnp.ones((k,), jnp.float32),
            terminate_prob=jnp.zeros((k,), jnp.float32),
            respawn_prob=jnp.full((k,), 0.5, jnp.float32),
            max_steps_in_episode=50,
        )

    @property
    def num_actions(self) -> int:
        return 9

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(9)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.rows, self.cols, self.num_objects + 1), jnp.float32)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        """Agent and all objects on distinct uniformly random empty cells."""
        # a uniformly random permutation of the empty cells: sort uniform scores, walls last
        scores = jnp.where(
            params.walls.reshape(-1), 2.0, jax.random.uniform(key, (self.rows * self.cols,))
        )
        _, cells = jax.lax.top_k(-scores, self.num_objects + 1)
        pos = jnp.stack([cells // self.cols, cells % self.cols], axis=-1).astype(jnp.int32)
        state = EnvState(
            agent=pos[0],
            objects=pos[1:],
            present=jnp.ones((self.num_objects,), bool),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        # one draw for everything random in a step: (termination, respawn coin, respawn cell)
        u = jax.random.uniform(key, (self.num_objects, 3))
        target = state.agent + MOVES[action]
        target = jnp.clip(target, 0, jnp.array([self.rows - 1, self.cols - 1], jnp.int32))
        blocked = params.walls[target[0], target[1]]
        agent = jnp.where(blocked, state.agent, target)

        hit = state.present & jnp.all(state.objects == agent, axis=-1)
        reward = jnp.sum(jnp.where(hit, params.rewards, 0.0))
        terminated = jnp.any(hit & (u[:, 0] < params.terminate_prob))
        present = state.present & ~hit

        # as in the authors' release, an absent object respawns at a uniformly random non-wall
        # cell, which may hold the agent or another object; the cell is drawn by inverting the CDF
        open_cells = ~params.walls.reshape(-1)
        cdf = jnp.cumsum(open_cells)
        cells = jnp.searchsorted(cdf, u[:, 2] * cdf[-1], side="right", method="compare_all")
        cells = jnp.minimum(cells, self.rows * self.cols - 1)
        spawn = ~present & (u[:, 1] < params.respawn_prob)
        new_pos = jnp.stack([cells // self.cols, cells % self.cols], -1).astype(jnp.int32)
        objects = jnp.where(spawn[:, None], new_pos, state.objects)
        present = present | spawn

        state = EnvState(agent=agent, objects=objects, present=present, time=state.time + 1)
        obs = self.get_obs(state, params)
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return (
            jax.lax.stop_gradient(obs),
            jax.lax.stop_gradient(state),
            reward.astype(jnp.float32),
            terminated,
            info,
        )

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        k = self.num_objects
        obs = jnp.zeros((self.rows, self.cols, k + 1), jnp.float32)
        obs = obs.at[state.objects[:, 0], state.objects[:, 1], jnp.arange(k)].max(
            state.present.astype(jnp.float32)
        )
        return obs.at[state.agent[0], state.agent[1], k].set(1.0)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return jnp.array(False)


def gridworld_params(
    env: GridWorld,
    rewards: tuple[float, ...],
    terminate_prob: tuple[float, ...],
    respawn_prob: float,
    horizon: int,
) -> EnvParams:
    """EnvParams for `env` with border walls and the given objects."""
    if len(rewards) != env.num_objects or len(terminate_prob) != env.num_objects:
        raise ValueError(f"{env.name} has {env.num_objects} objects, got {len(rewards)} rewards")
    return EnvParams(
        walls=border_walls(env.rows, env.cols),
        rewards=jnp.array(rewards, jnp.float32),
        terminate_prob=jnp.array(terminate_prob, jnp.float32),
        respawn_prob=jnp.full((env.num_objects,), respawn_prob, jnp.float32),
        max_steps_in_episode=horizon,
    )
