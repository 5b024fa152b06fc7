"""One evaluation, shared by the train and evaluate CLIs and `MSBert.evaluate`:
per-exit metrics, the threshold sweep with FLOPs and wall-clock speed-ups,
and the chosen threshold.

```python
trained = load_run("runs/sst2")
result = evaluate_file(trained, "../shared/data/glue/SST-2/dev.tsv", timing_examples=0)
result["chosen"]["flops_speedup"], result["oracle_flops_speedup"]
```
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf
from absl import logging

from msbert_tf.errors import UserInputError
from msbert_tf.inference import flops
from msbert_tf.inference.calibration import oracle_exit_layers
from msbert_tf.inference.early_exit import exit_outputs, predictions_of, with_final
from msbert_tf.inference.exit_metrics import exit_logits, exit_metrics
from msbert_tf.inference.metrics import score
from msbert_tf.inference.sweep import WallClock, choose_threshold, flops_speedup, sweep
from msbert_tf.inference.uncertainty import DEFAULT_TOLERANCES, ExitRule, default_uncertainty  # noqa: F401 - re-exported

DEFAULT_THRESHOLDS = tuple(round(s, 2) for s in np.linspace(0.0, 1.0, 11))
# The learned rule's uncertainty (one minus the chance that an exit agrees
# with the final) lives near 0: its certified thresholds on SST-2 lie in
# 0.004-0.01, where the 0.1 grid has none (a run's sweep read 0.96x at 0, then
# 3.93x 1.6 points down at 0.1, so its dev pick was the full model).
LEARNED_THRESHOLDS = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0)


def default_thresholds(uncertainty):
    """The thresholds a sweep reads when none are given, on the rule's own scale."""
    return LEARNED_THRESHOLDS if uncertainty == "learned" else DEFAULT_THRESHOLDS


def rules_for(uncertainty, thresholds=None, top_k=2, num_layers=None, tolerances=(0.0,)):
    """Thresholds to sweep (default: `default_thresholds`); for `patience`,
    every patience from 1 to L - 2 (for regression, at each of `tolerances`)."""
    if uncertainty == "patience":
        return [
            ExitRule("patience", patience=p, tolerance=float(t))
            for t in tolerances
            for p in range(1, max(num_layers - 1, 2))
        ]
    thresholds = default_thresholds(uncertainty) if thresholds is None else thresholds
    return [ExitRule(uncertainty, threshold=float(t), top_k=top_k) for t in thresholds]


def sweep_rules(task, num_layers, uncertainty=None, thresholds=None, top_k=2, tolerances=None, weights=None):
    """The sweep's exit rules, each validated (a bad one is a UserInputError).

    `thresholds` (default `default_thresholds(uncertainty)`) are entropy,
    top-K or learned ones;
    `tolerances` (default `DEFAULT_TOLERANCES`) a regression's; a setting the
    chosen rule would never read is refused rather than dropped without a
    word. `weights`: the run's fitted learned rule, for `uncertainty="learned"`.
    """
    uncertainty = uncertainty or default_uncertainty(task)
    if uncertainty == "patience" and thresholds is not None:
        raise UserInputError(
            "--thresholds sets entropy or top-K thresholds; the patience rule sweeps every "
            "patience from 1 to L - 2 instead: drop --thresholds."
        )
    if thresholds is not None and len(thresholds) == 0:
        raise UserInputError("--thresholds is empty: give at least one threshold in [0, 1], or leave it out.")
    if not task.regression and tolerances is not None:
        raise UserInputError(
            "--tolerances applies to regression tasks (patience rule) only: drop --tolerances."
        )
    if uncertainty == "learned" and weights is None:
        raise UserInputError(
            "the learned rule is fitted after training: train with entropy, then "
            "`python -m msbert_tf.calibrate --uncertainty=learned` and `python -m msbert_tf.evaluate --uncertainty=learned`."
        )
    tolerances = (tolerances or DEFAULT_TOLERANCES) if task.regression else (0.0,)
    rules = rules_for(uncertainty, thresholds, top_k, num_layers=num_layers, tolerances=tolerances)
    if weights is not None:
        rules = [dataclasses.replace(rule, weights=weights) for rule in rules]
    for rule in rules:
        rule.validate(task.num_labels)
    return rules


def check_max_drop(max_drop):
    if not max_drop >= 0:
        raise UserInputError(f"--max_drop must be 0 or more metric points, got {max_drop}.")


def evaluate_file(trained, data_file, uncertainty=None, thresholds=None, top_k=2, tolerances=None, max_drop=0.5,
                  max_examples=None, timing_examples=200):
    """`evaluate` on a labelled file of the run's task (the rules of
    `sweep_rules`); the report dict, with the task, file and row count."""
    from msbert_tf.data import pipeline, readers
    from msbert_tf.inference.predict import learned_weights

    check_max_drop(max_drop)
    if max_examples is not None and max_examples < 1:
        raise UserInputError(f"--max_examples must be at least 1, got {max_examples}.")
    # The run's rule and final prediction (the mean of its last exits), as
    # calibrated, are the sweep's unless another rule is asked for.
    chosen = trained.run.load_threshold()
    uncertainty = uncertainty or chosen.get("uncertainty")
    final_exits = chosen.get("final_exits", 1)
    weights = learned_weights(trained, final_exits) if uncertainty == "learned" else None
    rules = [
        dataclasses.replace(rule, final_exits=final_exits)
        for rule in sweep_rules(trained.task, trained.classifier.num_layers, uncertainty, thresholds, top_k,
                                tolerances, weights)
    ]
    examples = readers.read_file(trained.task, data_file).take(max_examples)
    if len(examples) == 0:
        raise UserInputError(f"{data_file} has no rows to evaluate (only a header?).")
    split = pipeline.encode(examples, trained.preprocessor, name=os.path.basename(data_file))
    result = evaluate(
        trained.classifier, split, rules, max_drop,
        batch_size=trained.config.data.eval_batch_size, timing_examples=timing_examples,
        metrics=trained.task.metrics,
    )
    return {"task": trained.task.name, "data_file": data_file, "examples": len(split), **result}


def evaluate(classifier, split, rules, max_drop, batch_size=64, timing_examples=None, metrics=("accuracy",)):
    """Report dict: per-exit metrics, sweep points (with wall clock), chosen point.

    Wall clock is timed at batch 1 on the first `timing_examples` rows and at
    batch 32 on all; `timing_examples=0` skips timing.
    """
    logging.info(
        "evaluating %d rows: every exit, %d exit rule(s)%s.", len(split), len(rules),
        f", then wall clock at batch 1 on {min(timing_examples, len(split))} rows and at batch 32" if timing_examples else "",
    )
    logits = exit_logits(classifier, split, batch_size)
    per_exit = exit_metrics(classifier, split, batch_size, metrics, logits=logits)
    probs = np.asarray(exit_outputs(tf.constant(logits)))
    points = sweep(classifier, split, rules, batch_size, metric=metrics[0], probs=probs)
    # The limit of any exit rule: each row leaves at the first exit that
    # agrees with the full model.
    # sweep_rules never gives none; every rule carries the run's final.
    final_exits = rules[0].final_exits
    final = with_final(probs, final_exits)
    oracle = round(flops_speedup(oracle_exit_layers(final), split.lengths, flops.model_spec(classifier)), 3)
    # The dev pick stays within `max_drop` of the full model as it runs: the
    # chosen final, which is the last exit alone only when final_exits is 1.
    full_metric = score(metrics[0], split.labels, predictions_of(final[:, -1]))
    if timing_examples:
        for timing_batch, limit in ((1, timing_examples), (32, None)):
            clock = WallClock(classifier, split, timing_batch, max_examples=limit)
            for number, (rule, point) in enumerate(zip(rules, points), 1):
                speedup = point[f"wall_clock_speedup_batch{timing_batch}"] = round(clock.speedup(rule), 3)
                # Timing is the slow part (minutes on a CPU): a line per rule shows it moving.
                setting = f"patience {rule.patience}" if rule.kind == "patience" else f"{rule.kind} {rule.threshold}"
                logging.info("wall clock at batch %d, rule %d of %d (%s): %.2fx the teacher's.",
                             timing_batch, number, len(rules), setting, speedup)
    chosen = choose_threshold(points, full_metric, max_drop)
    if chosen:
        chosen = {**chosen, "fraction_of_oracle": round(chosen["flops_speedup"] / oracle, 3)}
    return {"dev": per_exit, "sweep": points, "max_drop": max_drop, "chosen": chosen,
            "oracle_flops_speedup": oracle, "final_exits": final_exits,
            "full_model_metric": full_metric}
