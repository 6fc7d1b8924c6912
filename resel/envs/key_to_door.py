"""Key-to-Door: a three-phase gridworld for long-term credit assignment.

Each phase takes place in its own `room_size x room_size` room; a timer moves the agent on:

1. key phase (`key_steps` = 15 steps): the agent starts on a random cell, a key lies on another;
   stepping onto the key picks it up (no reward).
2. apple phase (`apple_steps` = N steps, N in {60, 120, 250, 500}): `num_apples` apples on random
   cells, each worth `apple_reward` when stepped on: distractor rewards. An eaten apple comes back
   on its cell `apple_respawn` steps later (it reappears after the step at time t_eaten + R + 1;
   0: never).
3. door phase (`door_steps` = 10 steps): stepping onto the door with the key opens it and pays
   `final_reward`, once per episode (an opened door pays nothing more, staying on it or coming
   back); without the key the door is a wall.

As in the release (FanmingL/Recurrent-Offpolicy-RL, envs/memory_envs/key_to_door, DeepMind's
pycolab game): opening the door does not end the episode; the game is over only at the end of the
door phase, after exactly `key_steps + apple_steps + door_steps` steps, which is also the time
limit, and the release's trainer treats that last step as a time-out (bootstrapped). We follow
it: the episode never terminates, it always ends by the time-out (`info["truncated"]` on its last
step, `info["terminated"]` never).
Actions: Discrete(4) = up, down, left, right (moves into walls leave the agent in place).
Observation: the current room as 4 binary planes (agent, key, apple, door), flattened:
float32 [4 * room_size**2]. Hidden: whether the key was picked up (only visible in phase 1).
`info["success"]`: whether the door was opened with the key so far in the episode, so on the last
step it is the episode's success (the release's `info["success"] = last_phase_reward() > 0` at game
over, logged as `successTest`; the paper's Key-to-Door metric is the success rate).
Defaults follow the release's Key-to-Door ("Mem-SR-N": phases 15 / N / 10 steps, 10 apples worth 1
that respawn 20 steps after being eaten, final reward 5). The earlier TVT-style variant is
`door_steps=15, final_reward=10, apple_respawn=0`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from resel.envs.core import Environment
from resel.envs.spaces import Box, Discrete

MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # up, down, left, right


@struct.dataclass
class KeyToDoorParams:
    key_steps: int = 15
    apple_steps: int = 60
    door_steps: int = 10
    apple_reward: float = 1.0
    final_reward: float = 5.0
    apple_respawn: int = 20
    max_steps_in_episode: int = 85


@struct.dataclass
class KeyToDoorState:
    agent: jax.Array  # int32 [2] (row, col)
    key: jax.Array  # int32 [2]
    has_key: jax.Array  # bool
    opened: jax.Array  # bool: the door was opened with the key (the episode's success so far)
    apples: jax.Array  # bool [room_size, room_size]
    eaten_at: jax.Array  # int32 [room_size, room_size]: time an apple was last eaten there, or -1
    door: jax.Array  # int32 [2]
    starts: jax.Array  # int32 [2, 2]: agent start of the apple and door phases
    time: jax.Array


class KeyToDoor(Environment):
    """Three-phase key-to-door gridworld (see module docstring)."""

    family = "credit_assignment"
    hidden = "whether the key was picked up (after the key phase)"

    def __init__(
        self,
        *,
        apple_steps: int = 60,
        key_steps: int = 15,
        door_steps: int = 10,
        room_size: int = 5,
        num_apples: int = 10,
        apple_reward: float = 1.0,
        final_reward: float = 5.0,
        apple_respawn: int = 20,
    ):
        if min(apple_steps, key_steps, door_steps) < 1:
            raise ValueError("Key-to-Door phases need at least one step each")
        if apple_respawn < 0:
            raise ValueError(f"apple_respawn must be >= 0 (0: never), got {apple_respawn}")
        if room_size < 2 or not 0 <= num_apples <= room_size**2 - 1:
            raise ValueError(
                f"room_size {room_size} must be >= 2 and num_apples {num_apples} in "
                f"[0, room_size**2 - 1]"
            )
        self.name = f"KeyToDoor-{apple_steps}"
        self.room_size = room_size
        self.num_apples = num_apples
        self._params = KeyToDoorParams(
            key_steps=key_steps,
            apple_steps=apple_steps,
            door_steps=door_steps,
            apple_reward=apple_reward,
            final_reward=final_reward,
            apple_respawn=apple_respawn,
            max_steps_in_episode=key_steps + apple_steps + door_steps,
        )

    @property
    def default_params(self) -> KeyToDoorParams:
        return self._params

    @property
    def _grid(self) -> tuple[jax.Array, jax.Array]:
        """Row and column index of every cell: int32 [room_size, room_size] each."""
        return tuple(jnp.indices((self.room_size, self.room_size), dtype=jnp.int32))

    def _cells(self, key: jax.Array, k: int) -> jax.Array:
        """k distinct random cells: int32 [k, 2]."""
        # top-k of uniform noise = k cells drawn without replacement (cheaper than a permutation)
        _, flat = jax.lax.top_k(jax.random.uniform(key, (self.room_size**2,)), k)
        return jnp.stack([flat // self.room_size, flat % self.room_size], axis=-1).astype(jnp.int32)

    def reset_env(self, key, params):
        k1, k2, k3 = jax.random.split(key, 3)
        first = self._cells(k1, 2)  # agent start, key
        second = self._cells(k2, 1 + self.num_apples)  # agent start, apples
        third = self._cells(k3, 2)  # agent start, door
        rows, cols = self._grid
        apples = jnp.any(
            (rows == second[1:, 0, None, None]) & (cols == second[1:, 1, None, None]), axis=0
        )
        state = KeyToDoorState(
            agent=first[0],
            key=first[1],
            has_key=jnp.array(False),
            opened=jnp.array(False),
            apples=apples,
            eaten_at=jnp.full(apples.shape, -1, jnp.int32),
            door=third[1],
            starts=jnp.stack([second[0], third[0]]),
            time=jnp.int32(0),
        )
        return self._observe(state, params), state

    def _phase(self, time, params) -> jax.Array:
        """0 key, 1 apple, 2 door phase for a step taken at `time`."""
        return (time >= params.key_steps).astype(jnp.int32) + (
            time >= params.key_steps + params.apple_steps
        ).astype(jnp.int32)

    def step_env(self, key, state, action, params):
        phase = self._phase(state.time, params)
        agent = jnp.clip(state.agent + MOVES[action], 0, self.room_size - 1)
        # without the key the door is a wall (the release's PlayerSprite: DOOR is impassable
        # until has_key); with it the agent can walk through
        blocked = (phase == 2) & ~state.has_key & jnp.all(agent == state.door)
        agent = jnp.where(blocked, state.agent, agent)
        on_key = (phase == 0) & ~state.has_key & jnp.all(agent == state.key)
        rows, cols = self._grid
        here = (rows == agent[0]) & (cols == agent[1])
        on_apple = (phase == 1) & jnp.any(state.apples & here)
        on_door = (phase == 2) & jnp.all(agent == state.door)
        has_key = state.has_key | on_key
        apples = state.apples & ~(here & on_apple)
        eaten_at = jnp.where(here & on_apple, state.time, state.eaten_at)
        back = (eaten_at >= 0) & (state.time > eaten_at + params.apple_respawn)
        apples = apples | (back & (params.apple_respawn > 0))
        opens = on_door & has_key & ~state.opened  # an opened door pays once per episode
        reward = on_apple * params.apple_reward + opens * params.final_reward
        time = state.time + 1
        # the timer moves the agent to the next room
        agent = jnp.where(time == params.key_steps, state.starts[0], agent)
        agent = jnp.where(time == params.key_steps + params.apple_steps, state.starts[1], agent)
        opened = state.opened | opens
        new = state.replace(
            agent=agent, has_key=has_key, opened=opened, apples=apples, eaten_at=eaten_at,
            time=time,
        )  # fmt: skip
        # never a termination: the episode ends by the time-out at the door phase's end (release)
        terminated = jnp.array(False)
        info = {"success": opened}
        return self._observe(new, params), new, reward.astype(jnp.float32), terminated, info

    def _observe(self, state, params) -> jax.Array:
        # comparisons against a coordinate grid rather than scatters: cheaper under vmap
        rows, cols = self._grid
        phase = self._phase(state.time, params)

        def at(pos):
            return (rows == pos[0]) & (cols == pos[1])

        planes = jnp.stack(
            [
                at(state.agent),
                at(state.key) & (phase == 0) & ~state.has_key,
                state.apples & (phase == 1),
                at(state.door) & (phase == 2),
            ]
        )
        return planes.astype(jnp.float32).reshape(-1)

    def observation_space(self, params=None) -> Box:
        return Box.make(0.0, 1.0, (4 * self.room_size**2,))

    def action_space(self, params=None) -> Discrete:
        return Discrete(4)
