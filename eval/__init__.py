"""eval: experiment studies, Brax PPO with any optax transform, reports, analyses and benchmarks."""
