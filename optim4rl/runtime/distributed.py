"""One program over several processes and hosts: JAX's multi-controller runtime, set up once.

Every process runs the same program; `jax.devices()` then lists the devices of all processes, a
`Mesh` over them shards arrays across hosts, and XLA's collectives do the all-reduces. The RL
packages (`meta_train`, `resel`, `eval`) use this module for the setup and the host-side chores:
gather a sharded tree to every host, write files from process 0 only, wait for each other.

Where the coordinator address, process count and process id come from, first match wins:
  1. flags (`--coordinator HOST:PORT --num-processes N --process-id I`, see `add_arguments`);
  2. JAX's environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
  3. a Slurm job step of more than one task (`srun`), auto-detected by `jax.distributed`.
Otherwise nothing is initialised and the program is the usual single process.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from optim4rl.runtime.cli import HEARTBEAT_TIMEOUT
from optim4rl.runtime.cli import (  # noqa: F401 - the flags live with the JAX-free CLI code
    add_distributed_arguments as add_arguments,
)

ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def settings(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The `jax.distributed.initialize` arguments these flags and this environment ask for, or
    None for a single process. Raises ValueError for an incomplete or inconsistent set."""
    env = os.environ if environ is None else environ
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given) and all(k in env for k in ENV):
        try:
            given = (env[ENV[0]], int(env[ENV[1]]), int(env[ENV[2]]))
        except ValueError as err:
            raise ValueError(f"{ENV[1]} and {ENV[2]} must be integers ({err})") from None
    if all(v is None for v in given):
        slurm_tasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
        return {} if slurm_tasks > 1 and "SLURM_PROCID" in env else None
    if any(v is None for v in given):
        raise ValueError("give all of --coordinator, --num-processes and --process-id, or none")
    address, n, i = given
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"process id {i} is not in 0..{n - 1} (--num-processes {n})")
    return {"coordinator_address": address, "num_processes": n, "process_id": i}


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
) -> bool:
    """Join the other processes (see the module docstring); True if this is a multi-process run.

    Call before anything touches a device. CPU processes exchange data with gloo collectives.
    A process whose heartbeats stop for `heartbeat_timeout` seconds is declared dead and every
    process is stopped; a process starved of CPU (several processes per core, long compiles) can
    miss them while alive.
    """
    kwargs = settings(coordinator, num_processes, process_id)
    if kwargs is None or jax.distributed.is_initialized():
        return kwargs is not None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs, heartbeat_timeout_seconds=heartbeat_timeout)
    return True


def initialize_from_args(args: argparse.Namespace) -> bool:
    """`initialize` with the flags of `add_arguments`."""
    return initialize(args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)


def is_main() -> bool:
    """True in the process that writes files and prints progress (process 0)."""
    return jax.process_index() == 0


def gather(tree: Any) -> Any:
    """The whole tree as NumPy arrays on every host (arrays spanning processes are all-gathered).

    Every process must call it (it is a collective when the arrays span several processes).
    """
    from jax.experimental import multihost_utils

    def one(x):
        if getattr(x, "is_fully_addressable", True):  # NumPy, or on this process's devices
            return jax.device_get(x)
        return multihost_utils.process_allgather(x, tiled=True)

    return jax.tree_util.tree_map(one, tree)


def shard_seeds(tree: Any) -> Any:
    """`tree` (every leaf with a leading axis of seeds) sharded on that axis over all devices of
    all processes, when there are several and they divide the seed count; else unchanged (then
    every process computes every seed). Jitted vmapped functions keep the sharding."""
    devices = jax.devices()
    n = jax.tree_util.tree_leaves(tree)[0].shape[0]
    if len(devices) == 1 or n % len(devices):
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("seeds",)), PartitionSpec("seeds"))

    def put(x):  # every process holds the whole value and keeps its devices' rows
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(put, tree)


def barrier(name: str) -> None:
    """Wait until every process reached the barrier called `name`."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def host_zeros(tree: Any) -> Any:
    """NumPy zeros shaped like the (global) arrays of `tree`: a template to restore into."""
    return jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), tree)
