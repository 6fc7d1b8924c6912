"""optim4rl: learned optimizers for RL as optax transforms."""
