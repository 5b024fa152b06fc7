"""Exit thresholds with a stated guarantee, calibrated on rows the model
never trained on.

Two risks, per example: `disagreement` (label-free: the early-exit label
differs from the full model's; for regression the values differ by more
than `disagreement_tolerance`) and `accuracy_drop` (labelled: the full model
is right and the exit is wrong). The threshold is the fastest of a fixed,
one-parameter family (the rule's threshold, or the patience) that
`risk_control.fixed_sequence` certifies: with probability at least
`confidence`, the risk on new rows like the calibration rows is at most
`max_risk`. A 1% disagreement bound also bounds the accuracy loss by 1 point.

```python
record = calibrate_run("runs/sst2")          # the run's held-out slice
record["threshold"], record["summary"]
calibrate_run("runs/sst2", data_file="more_rows.txt", max_risk=0.02)
```
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from msbert_tf.data import pipeline, readers
from msbert_tf.errors import UserInputError
from msbert_tf.inference import flops, risk_control
from msbert_tf.inference.early_exit import exit_outputs, predictions_of, simulate, with_final
from msbert_tf.inference.exit_metrics import exit_logits
from msbert_tf.inference.sweep import flops_speedup
from msbert_tf.inference.risk_control import (  # the defaults live there, TensorFlow-free, for the CLI and API
    DEFAULT_CONFIDENCE, DEFAULT_DISAGREEMENT_TOLERANCE, DEFAULT_MAX_RISK, DEFAULT_RISK, RISKS,
)
from msbert_tf.inference.uncertainty import ExitRule, default_uncertainty

# The family tested, safest first: thresholds on a 0.005 grid, and, below
# 0.05, a geometric one 3% apart (a finer grid costs fixed-sequence testing
# nothing in validity). The learned rule's uncertainty (one minus the chance
# that the exit agrees) lives near 0: on SST-2 its useful thresholds lie in
# 0.005-0.03, six steps of the 0.005 grid alone, and the certified speed-up
# jumped between them (1.61x +- 0.49 over 20 splits, BENCHMARKS.md) ...
THRESHOLDS = tuple(sorted(set(np.round(np.concatenate([np.linspace(0.0, 1.0, 201), np.geomspace(1e-4, 0.05, 211)]),
                                   6).tolist())))
# ... or patience from L - 2 down to 1, for regression at each of these
# agreement tolerances (ascending) in turn.
PATIENCE_TOLERANCES = (0.05, 0.1, 0.2, 0.3, 0.5)


def candidates(uncertainty, num_layers, top_k=2, regression=False, weights=None):
    """The thresholds tested, in the order tested: safest (the full model) first."""
    if uncertainty == "patience":
        tolerances = PATIENCE_TOLERANCES if regression else (0.0,)
        return [
            ExitRule("patience", patience=p, tolerance=t)
            for p in range(max(num_layers - 2, 1), 0, -1)
            for t in tolerances
        ]
    return [ExitRule(uncertainty, threshold=s, top_k=top_k, weights=weights) for s in THRESHOLDS]


def row_losses(probs, exit_probs, risk, labels=None, disagreement_tolerance=DEFAULT_DISAGREEMENT_TOLERANCE):
    """Per row: does the early exit (`exit_probs`, B x N) suffer the risk
    against the full model (`probs[:, -1]`)?"""
    full, early = predictions_of(probs[:, -1]), predictions_of(exit_probs)
    if risk == "disagreement":
        if probs.shape[-1] == 1:
            return np.abs(early.astype(np.float64) - full) > disagreement_tolerance
        return early != full
    return (full == labels) & (early != labels)


def oracle_exit_layers(probs, disagreement_tolerance=DEFAULT_DISAGREEMENT_TOLERANCE):
    """1-based: each row leaves at the first exit that agrees with the full
    model (the limit of any exit rule at zero disagreement)."""
    predictions = predictions_of(probs)
    if probs.shape[-1] == 1:
        agree = np.abs(predictions - predictions[:, -1:]) <= disagreement_tolerance
    else:
        agree = predictions == predictions[:, -1:]
    return agree.argmax(axis=1) + 1


def _check(risk, labelled, regression):
    if risk not in RISKS:
        raise UserInputError(f"risk {risk!r} is not one of {', '.join(RISKS)}.")
    if risk == "accuracy_drop" and regression:
        raise UserInputError("risk accuracy_drop needs class labels; a regression task calibrates --risk=disagreement.")
    if risk == "accuracy_drop" and not labelled:
        raise UserInputError(
            "risk accuracy_drop needs labelled rows and these have none: give a labelled file "
            "in the task's layout, or use --risk=disagreement (no labels needed)."
        )


def calibrate(probs, lengths, spec, risk=DEFAULT_RISK, max_risk=DEFAULT_MAX_RISK,
              confidence=DEFAULT_CONFIDENCE, uncertainty="entropy", top_k=2, labels=None,
              disagreement_tolerance=DEFAULT_DISAGREEMENT_TOLERANCE, weights=None, final_exits=(1,)):
    """The certified threshold for every exit's outputs `probs` (B x L x N) on
    the calibration rows, as the record `exit_threshold.json` holds.

    `final_exits`: the final predictions tried (`ExitRule.final_exits`),
    each with its own family of thresholds certified at `1 - (1 -
    confidence) / len(final_exits)` (Bonferroni), so the bound holds for
    whichever is chosen: the fastest, among those (on labelled rows) at
    least as accurate as the last exit alone (on unlabelled rows speed
    alone decides). Rows too few to certify
    anything at that level try the first final alone. `weights`: the learned rule's
    coefficients for each final tried, `{final_exits: coefficients}`.
    """
    probs = np.asarray(probs)
    regression = probs.shape[-1] == 1
    _check(risk, labels is not None, regression)
    risk_control.check_levels(max_risk, confidence)
    if not final_exits:
        raise UserInputError("final_exits is empty: give at least one, e.g. 1 (the last exit alone).")
    if weights is not None and not isinstance(weights, dict):
        raise TypeError("calibrate's weights are the learned rule's coefficients per final: {final_exits: weights}.")
    level = 1 - (1 - confidence) / len(final_exits)
    if len(final_exits) > 1 and len(lengths) < risk_control.min_calibration_rows(max_risk, level):
        # Too few rows to pay for the choice: the first final alone, at the full level.
        final_exits, level = final_exits[:1], confidence
    tried = [
        _certify(probs, lengths, spec, risk, max_risk, level, uncertainty, top_k, labels, disagreement_tolerance,
                 (weights or {}).get(k), k)
        for k in final_exits
    ]
    last_alone = np.mean(predictions_of(probs[:, -1]) == labels) if labels is not None and not regression else 0
    accurate = [t for t in tried if t.get("final_accuracy", 0) >= round(float(last_alone), 5)]
    best = max(accurate or tried[:1], key=lambda t: (t["flops_speedup"], -t["final_exits"]))
    # The bound was computed at the family's level, stricter than `confidence`.
    record = dict(best, confidence=confidence, family_confidence=round(level, 6))
    if "final_accuracy" in record and record["final_exits"] > 1:
        # A final named in advance is not checked against the last exit: the record says how they compare.
        record["last_exit_accuracy"] = round(float(last_alone), 5)
    if len(final_exits) > 1:
        record["final_exits_tried"] = {  # string keys: the record is JSON
            str(t["final_exits"]): {key: t[key] for key in ("flops_speedup", "final_accuracy") if key in t} for t in tried
        }
    return record


def _certify(probs, lengths, spec, risk, max_risk, confidence, uncertainty, top_k, labels, disagreement_tolerance,
             weights, final_exits):
    """`calibrate` for one final prediction."""
    regression = probs.shape[-1] == 1
    # The rules run on outputs whose last exit already is this final.
    rules = [r.validate(probs.shape[-1]) for r in candidates(uncertainty, probs.shape[1], top_k, regression, weights)]
    probs = with_final(probs, final_exits)
    results = [simulate(probs, rule) for rule in rules]
    losses = np.stack([row_losses(probs, r.probs, risk, labels, disagreement_tolerance) for r in results])
    certified = risk_control.fixed_sequence(losses, max_risk, confidence)
    # Nothing certified, not even the safest: run the whole model.
    index = max(certified.chosen, 0)
    rule, result, n = rules[index], results[index], len(lengths)
    errors = int(losses[index].sum())
    speedup = flops_speedup(result.exit_layers, lengths, spec)
    oracle = flops_speedup(oracle_exit_layers(probs, disagreement_tolerance), lengths, spec)
    record = {
        "uncertainty": rule.kind,
        "threshold": rule.threshold if certified.chosen >= 0 else 0.0,
        "top_k": rule.top_k if rule.kind == "topk" else None,
        "patience": rule.patience if rule.kind == "patience" else None,
        "tolerance": rule.tolerance if rule.kind == "patience" and regression else None,
        "final_exits": final_exits,
        "certified": certified.chosen >= 0,
        "risk": risk,
        "max_risk": max_risk,
        "confidence": confidence,
        "calibration_rows": n,
        "empirical_risk": round(errors / n, 5),
        "risk_upper_bound": round(risk_control.upper_bound(errors, n, confidence), 5),
        "candidates_tested": len(certified.p_values),
        "flops_speedup": round(speedup, 3),
        "exits_before_last": round(float(np.mean(result.exit_layers < probs.shape[1])), 4),
        "mean_exit_layer": round(float(result.exit_layers.mean()), 3),
        "oracle_flops_speedup": round(oracle, 3),
        "fraction_of_oracle": round(speedup / oracle, 3),
    }
    if labels is not None and not regression:
        record["final_accuracy"] = round(float(np.mean(predictions_of(probs[:, -1]) == labels)), 5)
    if regression:
        record["disagreement_tolerance"] = disagreement_tolerance
    return record


def summary(record, rows="the calibration set"):
    """The record in words a user can act on."""
    what = {
        "disagreement": "disagrees with the full model",
        "accuracy_drop": "is wrong where the full model is right",
    }[record["risk"]]
    if not record["certified"]:
        return (
            f"nothing faster than the full model could be certified at a {record['risk']} of "
            f"{record['max_risk']:.1%} with {record['confidence']:.0%} confidence on "
            f"{record['calibration_rows']:,} rows: every input runs all layers."
        )
    oracle = (
        f" The limit, an oracle that lets each input leave at the first exit agreeing with the full "
        f"model, is {record['oracle_flops_speedup']:.2f}x: this threshold reaches {record['fraction_of_oracle']:.0%} of it."
    )
    final = ""
    if record.get("final_exits", 1) > 1:
        final = f" The full model's prediction is the mean of its last {record['final_exits']} exits"
        if "last_exit_accuracy" in record:
            final += (f" ({record['final_accuracy']:.1%} accurate on these rows, the last "
                      f"exit alone {record['last_exit_accuracy']:.1%})")
        final += "."
    return (
        f"exits before the last layer on {record['exits_before_last']:.0%} of inputs "
        f"({record['flops_speedup']:.2f}x fewer FLOPs); with {record['confidence']:.0%} confidence "
        f"{what} on at most {record['max_risk']:.1%} of inputs like {rows} "
        f"({record['empirical_risk']:.1%} measured on {record['calibration_rows']:,} held-out rows)." + final + oracle
    )


def calibration_rows(trained, data_file=None):
    """(examples, labelled, where they come from) for `trained`'s run."""
    data_file = data_file or trained.config.data.calibration_file
    if data_file:
        examples, labelled = readers.read_rows(trained.task, data_file)
        where = data_file
    elif trained.config.data.calibration_source == "dev":
        examples, labelled = readers.read_split(trained.task, "dev", trained.config.data.data_dir), True
        where = f"the {trained.task.name} dev set"
    else:
        examples = trained.run.load_calibration_rows(trained.task)
        if examples is None:
            raise risk_control.TooFewRows(
                f"{trained.run.path} holds no calibration rows (trained with calibration_fraction 0 or "
                "before they were held out): pass --data_file=<rows the model never trained on>."
            )
        labelled = True
        where = ("the training sentences held out of this run" if trained.config.data.calibration_source ==
                 "held_out_sentences" else "the training rows held out of this run")
    if len(examples) == 0:
        raise UserInputError(f"{data_file or trained.run.calibration_rows} has no rows to calibrate on.")
    return examples, labelled, where


def exit_probabilities(trained, examples, name):
    """(encoded split, B x L x N outputs of every exit) of `examples`."""
    split = pipeline.encode(examples, trained.preprocessor, name=name)
    logits = exit_logits(trained.classifier, split, trained.config.data.eval_batch_size)
    return split, np.asarray(exit_outputs(tf.constant(logits)))


# Training rows the learned rule is fitted on (label-free), at most.
EXIT_MODEL_ROWS = 8000


def exit_model_rows(trained, max_rows=EXIT_MODEL_ROWS):
    """The training rows (never calibration rows) the learned rule is fitted
    on: up to `max_rows`, drawn with the run's seed."""
    rows, _ = readers.training_rows(trained.task, trained.config.data, trained.config.seed)
    if len(rows) > max_rows:
        rows = rows.select(np.sort(np.random.default_rng(trained.config.seed).choice(len(rows), max_rows, replace=False)))
    return rows


def finals_for(trained, final_exits=None):
    """The final predictions a run tries (default: its config's
    `final_exits`): those within its layers; regression keeps its last exit."""
    if trained.task.regression:
        return (1,)
    final_exits = trained.config.final_exits if final_exits is None else final_exits
    return tuple(k for k in final_exits if k <= trained.classifier.num_layers)


def fit_exit_model(trained, max_rows=EXIT_MODEL_ROWS, final_exits=None):
    """Fits the learned rule on up to `max_rows` of the run's training rows
    (never its calibration rows), once against each final prediction of
    `final_exits` (default: the run config's; whether an exit agrees with it
    is what the rule learns), and saves it to RUN/exit_model.json."""
    from msbert_tf.inference import learned_exit

    if trained.task.regression:
        raise UserInputError("the learned rule needs class probabilities; a regression task exits by patience.")
    rows = exit_model_rows(trained, max_rows)
    _, probs = exit_probabilities(trained, rows, "exit-model rows")
    model = {
        "features": list(learned_exit.FEATURES),
        "weights_by_final_exits": {
            str(k): learned_exit.fit(with_final(probs, k)).tolist() for k in finals_for(trained, final_exits)
        },
        "rows": len(rows),
    }
    trained.run.save_exit_model(model)
    return model


def calibrate_run(run_dir=None, data_file=None, risk=DEFAULT_RISK, max_risk=DEFAULT_MAX_RISK,
                  confidence=DEFAULT_CONFIDENCE, uncertainty=None, top_k=2,
                  disagreement_tolerance=DEFAULT_DISAGREEMENT_TOLERANCE, trained=None, save=True,
                  final_exits=None):
    """Certifies a threshold for a run folder (or an already loaded
    `trained` run) and writes it to `RUN/exit_threshold.json`, the default of
    predict, export and the SavedModel. Returns the record. `final_exits`:
    the final predictions tried (the mean of the last k exits; see
    `calibrate`); `(1,)` keeps the last exit alone. `uncertainty` and
    `final_exits`: default, what the run's config names (the rule, else the
    task's)."""
    from msbert_tf.inference.loading import load_run
    from msbert_tf.inference.predict import learned_weights

    # Levels and rule first: a bad one is refused before any model runs.
    risk_control.check_levels(max_risk, confidence)
    trained = trained or load_run(run_dir)
    uncertainty = uncertainty or trained.config.uncertainty or default_uncertainty(trained.task)
    final_exits = trained.config.final_exits if final_exits is None else tuple(final_exits)
    for k in final_exits:
        ExitRule("patience", final_exits=k).validate(trained.classifier.num_labels)
    final_exits = finals_for(trained, final_exits)
    if not final_exits:
        raise UserInputError(f"every final_exits asked averages more exits than the model has "
                             f"({trained.classifier.num_layers}).")
    weights = None
    if uncertainty == "learned":
        model = trained.run.load_exit_model()
        if model is None or not set(map(str, final_exits)) <= set(model["weights_by_final_exits"]):
            fit_exit_model(trained, final_exits=final_exits)
        weights = {k: learned_weights(trained, k) for k in final_exits}
    ExitRule(uncertainty, top_k=top_k, weights=weights and weights[final_exits[0]]).validate(
        trained.classifier.num_labels)
    examples, labelled, where = calibration_rows(trained, data_file)
    _check(risk, labelled, trained.task.regression)
    logging.info("certifying an exit threshold (%s rule) on %d rows: %s.", uncertainty, len(examples), where)
    split, probs = exit_probabilities(trained, examples, os.path.basename(where))
    record = calibrate(
        probs, split.lengths, flops.model_spec(trained.classifier), risk, max_risk, confidence,
        uncertainty, top_k, split.labels if labelled else None, disagreement_tolerance, weights, final_exits,
    )
    record["rows"] = where
    record["summary"] = summary(record, where)
    if save:
        trained.run.save_threshold(record)
    return record


def calibrate_after_training(trained, top_k=2):
    """Training's last step: the certified threshold at the defaults (`top_k`:
    the K of a top-K rule). Too few held-out rows (a small or custom run) are
    not a failure of the training: the run then keeps the full model, and
    says why."""
    try:
        return calibrate_run(trained=trained, top_k=top_k)
    except risk_control.TooFewRows as e:
        record = {
            "uncertainty": default_uncertainty(trained.task), "threshold": 0.0, "top_k": None, "patience": None,
            "tolerance": None, "final_exits": 1, "certified": False, "risk": DEFAULT_RISK, "max_risk": DEFAULT_MAX_RISK,
            "confidence": DEFAULT_CONFIDENCE,
            "summary": f"no certified threshold: {e} Every input runs all layers until "
                       f"`python -m msbert_tf.calibrate --run_dir={trained.run.path} --data_file=...` finds one.",
        }
        trained.run.save_threshold(record)
        return record
