"""Inference: per-exit evaluation (early-exit predictor and FLOPs to come)."""
