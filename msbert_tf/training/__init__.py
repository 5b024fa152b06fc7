"""Training: the two stages, checkpoints and resume."""
