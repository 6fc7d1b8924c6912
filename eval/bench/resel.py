"""`python -m eval bench resel`: RESeL's update throughput against the machine's matmul
throughput, update time per context encoder, encoder forward+backward time against sequence length
(Mamba vs GRU), and the selective scan parallel vs sequential/chunked.

All times are medians over rounds in which the compared programs run in turn; a ratio (to the GRU,
the sequential scan or a matmul) is taken within each round and printed as the median with its
range, since a shared CPU's speed drifts by up to 2x over minutes.
Options: --quick (fewer lengths and sizes, for a smoke run), --repeats N (rounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from eval.bench import cli
from eval.bench.timing import host_allocator, median, ratio_text, round_ratios, time_interleaved

TRAJ_LEN = 1000


def _filled_trainer(cfg, encoder: str, scan: str | None = None):
    """A trainer on Pendulum-P with 1000-step episodes and a buffer of two whole trajectories."""
    from resel import buffer as rb
    from resel import envs, train

    env, params = envs.make("Pendulum-P")
    params = params.replace(max_steps_in_episode=TRAJ_LEN)
    net = dataclasses.replace(cfg.net, encoder=encoder, scan_method=scan)
    cfg = dataclasses.replace(cfg, net=net, batch_size=TRAJ_LEN, total_steps=3 * TRAJ_LEN)
    trainer = train.make_train(cfg, env, params)
    state = jax.tree.map(lambda x: x[0], trainer.init(jax.random.PRNGKey(0)[None]))
    obs_dim, act_dim = state.buffer.obs.shape[1], state.buffer.act.shape[1]

    def fill(buf, key):
        def body(b, t):
            k = jax.random.fold_in(key, t)
            o, o2 = jax.random.normal(k, (2, obs_dim))
            a = jax.random.uniform(k, (act_dim,), minval=-1, maxval=1)
            done = (t % TRAJ_LEN) == TRAJ_LEN - 1
            return rb.add(b, o, a, jnp.sin(t * 0.01), jnp.asarray(False), o2, done), None

        return jax.lax.scan(body, buf, jnp.arange(2 * TRAJ_LEN))[0]

    buf = jax.jit(fill)(state.buffer, jax.random.PRNGKey(1))
    return trainer, state.agent, buf


def matmul(b: int, m: int, k: int, n: int) -> tuple[Callable[[], jax.Array], int]:
    """A jitted f32 (b, m, k) @ (b, k, n) product, ready to time, and its 2 b m k n FLOPs."""
    x = jax.random.normal(jax.random.PRNGKey(0), (b, m, k))
    y = jax.random.normal(jax.random.PRNGKey(1), (b, k, n))
    f = jax.jit(jnp.matmul)
    return lambda: f(x, y), 2 * b * m * k * n


def compiled_flops(jitted, *args) -> float:
    """FLOPs of the compiled program by XLA's cost analysis (a while loop's body counts once)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def bench_throughput(encoders, repeats: int) -> None:
    """One update of the cpu preset on Pendulum-P as training runs it (200-step episodes, its
    batch layout, a buffer filled by the warm-up), FLOP/s as a fraction of the matmul's: the
    update and the two matmuls in interleaved rounds, each timed warm (the fastest of 10 calls in a
    row), each fraction taken within a round."""
    from resel import config as C
    from resel import envs, train

    env, params = envs.make("Pendulum-P")
    net = C.preset("cpu", "Pendulum-P").net
    peak, peak_flops = matmul(1, 1024, 1024, 1024)
    # the critic ensemble's hidden layer over the batch: the update's largest matmuls
    small, small_flops = matmul(net.n_critics, 512, net.hidden, net.hidden)
    rounds = max(repeats, 10)
    print(f"\n## One update (cpu preset, Pendulum-P) vs matmul throughput, {rounds} interleaved "
          f"rounds of the update, a 1024x1024 @ 1024x1024 matmul and the critic layer's "
          f"({net.n_critics}, 512, {net.hidden}) @ ({net.n_critics}, {net.hidden}, {net.hidden}), "
          f"each the fastest of 10 calls in a row (warm); medians, fractions within rounds (range)")  # fmt: skip
    print("| encoder | batch positions | update ms | GFLOP per update | GFLOP/s | matmul GFLOP/s "
          "(1024^2, critic layer) | of 1024^2 matmul | of critic-layer matmul |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for enc in encoders:
        cfg = C.preset("cpu", "Pendulum-P")
        cfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, encoder=enc))
        trainer = train.make_train(cfg, env, params)
        state = trainer.warmup(trainer.init(jax.random.PRNGKey(0)[None]))
        state = jax.tree.map(lambda x: x[0], state)
        args = (state.agent, state.buffer, jax.random.PRNGKey(2))
        times = time_interleaved(
            {"update": lambda tr=trainer, a=args: tr.update(*a), "peak": peak, "small": small},
            repeats=rounds,
            best_of=10,
        )
        flops = compiled_flops(trainer.update, *args)
        t = median(times["update"])
        pos = trainer.layout.rows * trainer.layout.row_len
        print(f"| {enc} | {pos} | {1e3 * t:.1f} | {flops / 1e9:.2f} | {flops / t / 1e9:.1f} | "
              f"{peak_flops / median(times['peak']) / 1e9:.0f}, "
              f"{small_flops / median(times['small']) / 1e9:.0f} | "
              f"{_fraction(times, 'peak', peak_flops, flops)} | "
              f"{_fraction(times, 'small', small_flops, flops)} |", flush=True)  # fmt: skip
    print(
        "FLOPs: XLA's cost analysis of the compiled update; it counts a while loop's body once,"
        " so the sequential scan's per-step work is under-counted (a conservative fraction)."
    )


def _fraction(times: dict[str, list[float]], matmul: str, matmul_flops: int, flops: float) -> str:
    """The update's FLOP/s over the matmul's, (flops / t_update) / (matmul_flops / t_matmul),
    within each round: 'median% (min%-max%)'."""
    mid, lo, hi = (flops / matmul_flops * r for r in round_ratios(times, matmul, "update"))
    return f"{mid:.0%} ({lo:.0%}-{hi:.0%})"


def bench_updates(presets, encoders, repeats: int) -> None:
    from resel import config as C

    print(f"\n## One update (critic + policy + alpha) on whole {TRAJ_LEN}-step trajectories, "
          f"the encoders in {repeats} interleaved rounds; ratio to gru within rounds (range)")  # fmt: skip
    print("| preset | encoder | batch positions | update ms | ratio to gru |")
    print("|---|---|---|---|---|")
    key = jax.random.PRNGKey(2)
    for preset in presets:
        cfg = C.preset(preset, "Pendulum-P")
        fns, positions = {}, {}
        for enc in encoders:
            trainer, agent, buf = _filled_trainer(cfg, enc)
            fns[enc] = lambda t=trainer, a=agent, b=buf: t.update(a, b, key)
            positions[enc] = trainer.layout.rows * trainer.layout.row_len
        times = time_interleaved(fns, repeats=repeats)
        for enc in encoders:
            print(f"| {preset} | {enc} | {positions[enc]} | {1e3 * median(times[enc]):.1f} | "
                  f"{ratio_text(times, enc, 'gru')} |", flush=True)  # fmt: skip


def _encoder_fwd_bwd(net, length: int, batch: int):
    from resel.networks import ContextEncoder

    enc = ContextEncoder(net)
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, length, 3 * net.pre_dim))
    start = jnp.zeros((batch, length)).at[:, 0].set(1.0)
    params = enc.init(jax.random.PRNGKey(1), x[:, :8], start[:, :8])
    f = jax.jit(jax.grad(lambda p: jnp.sum(enc.apply(p, x, start) ** 2)))
    return lambda: f(params)


def bench_encoders(presets, lengths, repeats: int) -> None:
    from resel import config as C

    print("\n## Context encoder forward+backward vs sequence length (batch 1), ratio to GRU within "
          f"{repeats} interleaved rounds (range)")  # fmt: skip
    print(
        "| preset | length | gru ms | mamba (sequential) ms | ratio | mamba (parallel) ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for preset in presets:
        net = C.preset(preset, "Pendulum-P").net
        for length in lengths:
            nets = {"gru": dataclasses.replace(net, encoder="gru"),
                    "seq": dataclasses.replace(net, scan_method="sequential")}  # fmt: skip
            # the parallel scan materialises (length, d_inner, d_state): skip what won't fit
            big = length * net.expand * net.ce_dim * net.d_state * 4 > 2**28
            if not big:
                nets["par"] = dataclasses.replace(net, scan_method="parallel")
            fns = {name: _encoder_fwd_bwd(n, length, 1) for name, n in nets.items()}
            t = time_interleaved(fns, repeats=repeats)
            par = "skipped (memory) | -" if big else (
                f"{1e3 * median(t['par']):.1f} | {ratio_text(t, 'par', 'gru')}")  # fmt: skip
            print(f"| {preset} | {length} | {1e3 * median(t['gru']):.1f} | "
                  f"{1e3 * median(t['seq']):.1f} | {ratio_text(t, 'seq', 'gru')} | {par} |",
                  flush=True)  # fmt: skip


def _scan_fwd_bwd(method: str, chunk: int, args):
    from resel.scan import selective_scan

    u, dt, A, B, C, D, start = args

    def loss(u, dt):
        return jnp.sum(selective_scan(u, dt, A, B, C, D, start, method=method, chunk=chunk)[0] ** 2)

    f = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return lambda: f(u, dt)


def bench_scans(lengths, repeats: int) -> None:
    print("\n## Selective scan forward+backward (batch 4, d_inner 128, d_state 8), ratio to "
          f"sequential within {repeats} interleaved rounds (range)")  # fmt: skip
    print("| length | sequential ms | parallel | chunked 8 | chunked 64 |")
    print("|---|---|---|---|---|")
    b, d, n = 4, 128, 8
    for length in lengths:
        ks = jax.random.split(jax.random.PRNGKey(length), 5)
        u = jax.random.normal(ks[0], (b, length, d))
        dt = jax.nn.softplus(jax.random.normal(ks[1], (b, length, d)))
        A = -jnp.exp(jax.random.normal(ks[2], (d, n)))
        B, Cm = jax.random.normal(ks[3], (2, b, length, n))
        D = jnp.ones(d)
        start = (jax.random.uniform(ks[4], (b, length)) < 0.005).astype(jnp.float32)
        args = (u, dt, A, B, Cm, D, start)
        fns = {name: _scan_fwd_bwd(method, chunk or 64, args)
               for name, method, chunk in [("seq", "sequential", 0), ("par", "parallel", 0),
                                           ("c8", "chunked", 8), ("c64", "chunked", 64)]}  # fmt: skip
        t = time_interleaved(fns, repeats=repeats)
        print(f"| {length} | {1e3 * median(t['seq']):.1f} | {ratio_text(t, 'par', 'seq')} | "
              f"{ratio_text(t, 'c8', 'seq')} | {ratio_text(t, 'c64', 'seq')} |", flush=True)  # fmt: skip


def main(argv: list[str]) -> int:
    args = cli.resel().parse_args(argv)
    print(f"# RESeL benchmark on {jax.default_backend()} ({jax.device_count()} device(s), "
          f"{host_allocator()}); "
          f"default selective scan here: ", end="")  # fmt: skip
    from resel.scan import default_method

    print(default_method())
    presets = ["cpu"] if args.quick else ["cpu", "paper"]
    lengths = [250, 500] if args.quick else [250, 500, 1000, 2000, 4000]
    if "throughput" not in args.skip:
        bench_throughput(["mamba", "gru", "none"], args.repeats)
    if "updates" not in args.skip:
        bench_updates(presets, ["gru", "mamba", "transformer", "none"], args.repeats)
    if "encoders" not in args.skip:
        bench_encoders(presets, lengths, args.repeats)
    if "scans" not in args.skip:
        bench_scans(lengths, args.repeats)
    return 0
