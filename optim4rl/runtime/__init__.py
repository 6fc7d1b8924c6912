"""Run plumbing shared by the RL packages (not the optimizer library): command-line dispatch
(`cli`), `jax.distributed` setup (`distributed`), run folders (`folder`), the one agent contract
(`agent`) and the one run driver (`driver`)."""
