"""One evaluation, shared by the train and evaluate CLIs: per-exit metrics,
the threshold sweep with FLOPs and wall-clock speed-ups, and the chosen speed.
"""

import numpy as np

import tensorflow as tf

from msbert_tf.inference import flops
from msbert_tf.inference.calibration import oracle_exit_layers
from msbert_tf.inference.early_exit import exit_outputs
from msbert_tf.inference.exit_metrics import exit_logits, exit_metrics
from msbert_tf.inference.sweep import WallClock, choose_speed, flops_speedup, sweep
from msbert_tf.inference.uncertainty import ExitRule, default_uncertainty  # noqa: F401 - re-exported

DEFAULT_SPEEDS = tuple(round(s, 2) for s in np.linspace(0.0, 1.0, 11))


# Regression (STS-B, scores 0-5): how close two exits' values must be to agree.
DEFAULT_TOLERANCES = (0.1, 0.2, 0.3, 0.5)



def rules_for(uncertainty, speeds=DEFAULT_SPEEDS, top_k=2, num_layers=None, tolerances=(0.0,)):
    """Thresholds to sweep; for `patience`, every patience from 1 to L - 2 (for
    regression, at each of `tolerances`)."""
    if uncertainty == "patience":
        return [
            ExitRule("patience", patience=p, tolerance=float(t))
            for t in tolerances
            for p in range(1, max(num_layers - 1, 2))
        ]
    return [ExitRule(uncertainty, speed=float(s), top_k=top_k) for s in speeds]


def evaluate(classifier, split, rules, max_drop, batch_size=64, timing_examples=None, metrics=("accuracy",)):
    """Report dict: per-exit metrics, sweep points (with wall clock), chosen point.

    Wall clock is timed at batch 1 on the first `timing_examples` rows and at
    batch 32 on all; `timing_examples=0` skips timing.
    """
    logits = exit_logits(classifier, split, batch_size)
    per_exit = exit_metrics(classifier, split, batch_size, metrics, logits=logits)
    probs = np.asarray(exit_outputs(tf.constant(logits)))
    points = sweep(classifier, split, rules, batch_size, metric=metrics[0], probs=probs)
    # The limit of any exit rule: each row leaves at the first exit that
    # agrees with the full model.
    oracle = round(flops_speedup(oracle_exit_layers(probs), split.lengths, flops.model_spec(classifier)), 3)
    if timing_examples:
        for timing_batch, limit in ((1, timing_examples), (32, None)):
            clock = WallClock(classifier, split, timing_batch, max_examples=limit)
            for rule, point in zip(rules, points):
                point[f"wall_clock_speedup_batch{timing_batch}"] = round(clock.speedup(rule), 3)
    chosen = choose_speed(points, per_exit["teacher"], max_drop)
    if chosen:
        chosen = {**chosen, "fraction_of_oracle": round(chosen["flops_speedup"] / oracle, 3)}
    return {"dev": per_exit, "sweep": points, "max_drop": max_drop, "chosen": chosen,
            "oracle_flops_speedup": oracle}
