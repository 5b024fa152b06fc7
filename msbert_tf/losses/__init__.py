"""Losses: optimal transport (EMD) and the self-distillation objectives."""
