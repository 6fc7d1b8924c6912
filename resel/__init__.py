"""resel: the RESeL agent (recurrent off-policy SAC + REDQ on whole trajectories) in JAX, with a
separate optimizer for every module (context encoder, pre-encoders, heads) of policy and critic.

Kept light: importing `resel` loads nothing heavy, so `resel.envs` imports on its own.

    from resel import config, train
    cfg = config.cpu("Pendulum-P")                      # or config.paper("Pendulum-P")
    rows = train.run(cfg, "Pendulum-P", seeds=[0, 1, 2], out_dir="runs/pend")

Modules: `networks` (pre-encoders, Mamba/GRU/Transformer context encoders, policy, ensemble critic),
`scan` (selective scan, parallel/sequential/chunked), `buffer` (trajectory replay, packed batches),
`losses` (SAC+REDQ targets and losses), `algorithm` (make_train: the SAC/REDQ update, acting,
evaluation), `train` (make_agent: RESeL under the one agent contract; run: the one driver on
it), `checkpoint`, `config` (Config, presets), `python -m resel` (CLI).
"""

from optim4rl.runtime.quiet import silence_warp_notices

silence_warp_notices()  # brax's "Failed to import warp" lines (optim4rl.runtime.quiet)
