"""Catch (bsuite): a ball falls down a 10x5 board; catch it with the paddle on the bottom row.

3 actions: left, stay, right. The ball starts on the top row in a random column and falls one row
per step; when it reaches the bottom row the episode ends with reward +1 if the paddle is under it
and -1 otherwise. Observation: float32 `(rows, cols, 1)` with ones at the ball and the paddle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class EnvState:
    ball: jax.Array  # (2,) int32 row, col
    paddle: jax.Array  # () int32 column of the paddle on the bottom row
    time: jax.Array  # () int32 steps since reset


@struct.dataclass
class EnvParams:
    max_steps_in_episode: int = 100


class Catch(environment.Environment[EnvState, EnvParams]):
    """Catch on a `rows x cols` board (10 x 5 by default)."""

    def __init__(self, rows: int = 10, cols: int = 5):
        super().__init__()
        self.rows, self.cols = rows, cols

    @property
    def name(self) -> str:
        return "catch"

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    @property
    def num_actions(self) -> int:
        return 3

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(3)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.rows, self.cols, 1), jnp.float32)

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        col = jax.random.randint(key, (), 0, self.cols)
        state = EnvState(
            ball=jnp.stack([jnp.int32(0), col]).astype(jnp.int32),
            paddle=jnp.int32(self.cols // 2),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

    def step_env(self, key, state: EnvState, action, params: EnvParams):
        paddle = jnp.clip(state.paddle + action - 1, 0, self.cols - 1).astype(jnp.int32)
        ball = state.ball.at[0].add(1)
        terminated = ball[0] >= self.rows - 1
        reward = jnp.where(terminated, jnp.where(ball[1] == paddle, 1.0, -1.0), 0.0)
        state = EnvState(ball=ball, paddle=paddle, time=state.time + 1)
        info = {"discount": 1.0 - terminated.astype(jnp.float32)}
        return self.get_obs(state, params), state, reward.astype(jnp.float32), terminated, info

    def get_obs(self, state: EnvState, params=None, key=None) -> jax.Array:
        obs = jnp.zeros((self.rows, self.cols, 1), jnp.float32)
        obs = obs.at[state.ball[0], state.ball[1], 0].set(1.0)
        return obs.at[self.rows - 1, state.paddle, 0].set(1.0)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.ball[0] >= self.rows - 1
