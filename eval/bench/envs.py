"""`python -m eval bench envs`: environment steps per second of every task family, batch 1 and 64.

Each task is stepped with uniform random actions under `jit(scan(vmap(step)))`, auto-reset included.
The baseline, measured in the same run, is the underlying library stepping the same dynamics with
its own `step` (gymnax's `step` with its auto-reset; Brax's `env.step` without any reset), so the
ratio is the cost of this package's interface (per-step reset, task sampling, masking).
`--backends spring,generalized,positional` times the Brax tasks on each physics backend.
"""

from __future__ import annotations

import json
import sys
import time

import jax
from tqdm import tqdm

from eval.bench import cli
from eval.bench.timing import time_fn
from resel import envs

# one or two representative tasks per family (tasks of a family share their code path)
FAMILY_TASKS = {
    "classic": ["Pendulum-P", "CartPole-V", "Hopper-P"],
    "locomotion": ["HalfCheetah"],
    "gravity": ["Walker2d-Gravity"],
    "meta": ["CheetahDir", "Wind"],
    "credit_assignment": ["KeyToDoor-60", "MemoryChain"],
}


def _runner(reset, step, sample, batch: int, steps: int):
    """jit(key -> sum of rewards) of `steps` vmapped steps at batch size `batch`."""

    def run(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(reset)(jax.random.split(k_reset, batch))

        def body(state, k):
            k_act, k_step = jax.random.split(k)
            actions = jax.vmap(sample)(jax.random.split(k_act, batch))
            out = jax.vmap(step)(jax.random.split(k_step, batch), state, actions)
            return out[1], out[2].sum()

        return jax.lax.scan(body, state, jax.random.split(k_run, steps))[1].sum()

    return jax.jit(run)


def task_runner(name: str, batch: int, steps: int, backend: str | None):
    opts = {"backend": backend} if backend and "backend" in _options(name) else {}
    env, params = envs.make(name, **opts)
    space = env.action_space(params)
    return _runner(
        lambda k: env.reset(k, params),
        lambda k, s, a: env.step(k, s, a, params),
        space.sample,
        batch,
        steps,
    )


def baseline_runner(name: str, batch: int, steps: int, backend: str | None):
    """The wrapped library's own step on the same dynamics, or None (pure-JAX tasks)."""
    opts = {"backend": backend} if backend and "backend" in _options(name) else {}
    env, params = envs.make(name, **opts)
    space = env.action_space(params)
    inner = env
    while hasattr(inner, "env"):  # unwrap masks
        inner = inner.env
    if hasattr(inner, "gymnax_env"):
        genv = inner.gymnax_env
        return _runner(
            lambda k: genv.reset(k, params),
            lambda k, s, a: genv.step(k, s, a, params),
            space.sample,
            batch,
            steps,
        )
    if hasattr(inner, "brax_env"):
        benv = inner.brax_env
        return _runner(
            lambda k: (None, benv.reset(k)),
            lambda k, s, a: (None, benv.step(s, a), s.reward),
            space.sample,
            batch,
            steps,
        )
    return None


def _options(name: str) -> set[str]:
    import inspect

    from resel.envs.registry import _entry

    return set(inspect.signature(_entry(name).factory).parameters)


def main(argv: list[str]) -> int:
    args = cli.envs().parse_args(argv)

    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in FAMILY_TASKS]
    if unknown:
        print(f"unknown families {unknown}; choose from {list(FAMILY_TASKS)}", file=sys.stderr)
        return 2
    tasks = [(f, t) for f in families for t in FAMILY_TASKS[f]]
    tasks += [(envs.family_of(t), t) for t in args.tasks.split(",") if t]
    batches = [int(b) for b in args.batches.split(",")]
    backends = [b for b in args.backends.split(",") if b]

    jobs = []
    for family, task in tasks:
        brax = "backend" in _options(task)
        for backend in backends if brax else [None]:
            jobs += [(family, task, backend, b) for b in batches]

    print(
        f"jax backend: {jax.default_backend()}, devices: {len(jax.devices())}, "
        f"{args.steps} steps per call, median of {args.repeats}"
    )
    print("| family | task | backend | batch | steps/s | library steps/s | ratio | compile s |")
    print("|---|---|---|---:|---:|---:|---:|---:|", flush=True)
    rows = []
    key = jax.random.key(0)
    for family, task, backend, batch in tqdm(jobs, desc="bench envs", file=sys.stderr):
        run = task_runner(task, batch, args.steps, backend)
        start = time.perf_counter()
        jax.block_until_ready(run(key))  # compile + first call
        first_s = time.perf_counter() - start
        seconds = time_fn(lambda run=run: run(key), repeats=args.repeats, warmup=0)
        base = baseline_runner(task, batch, args.steps, backend)
        base_s = time_fn(lambda b=base: b(key), repeats=args.repeats) if base else None
        row = dict(
            family=family,
            task=task,
            backend=backend or "-",
            batch=batch,
            steps_per_s=args.steps * batch / seconds,
            baseline_steps_per_s=args.steps * batch / base_s if base_s else None,
            first_call_s=first_s,
        )
        rows.append(row)
        ratio = f"{base_s / seconds:.2f}" if base_s else "-"
        base_txt = f"{row['baseline_steps_per_s']:,.0f}" if base_s else "-"
        line = (
            f"| {family} | {task} | {row['backend']} | {batch} | {row['steps_per_s']:,.0f} | "
            f"{base_txt} | {ratio} | {first_s:.1f} |"
        )
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()
    if len(backends) > 1:
        print("\nBrax backends, steps/s relative to the first backend in the same run:")
        for task, batch in dict.fromkeys(
            (r["task"], r["batch"]) for r in rows if r["backend"] != "-"
        ):
            sel = {
                r["backend"]: r["steps_per_s"]
                for r in rows
                if r["task"] == task and r["batch"] == batch
            }
            first = sel[backends[0]]
            txt = ", ".join(f"{b} {v / first:.2f}" for b, v in sel.items())
            print(f"  {task} B={batch}: {txt}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0
