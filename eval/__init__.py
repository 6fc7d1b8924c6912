"""eval: experiment studies, Brax PPO with any optax transform, reports, analyses and benchmarks."""

from optim4rl.runtime.quiet import silence_warp_notices

silence_warp_notices()  # brax's "Failed to import warp" lines (optim4rl.runtime.quiet)
