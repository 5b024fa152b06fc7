"""Flags of the early-exit evaluation, shared by the train and evaluate CLIs."""

import dataclasses

from absl import flags

from msbert_tf.errors import UserInputError
from msbert_tf.inference.evaluation import DEFAULT_SPEEDS, DEFAULT_TOLERANCES, default_uncertainty, rules_for

flags.DEFINE_list("speeds", [str(s) for s in DEFAULT_SPEEDS], "Exit thresholds to sweep, in [0, 1].")
flags.DEFINE_string("uncertainty", None, "Exit rule: entropy (default), topk, learned (fitted by calibrate) or patience (regression: the only one).")
flags.DEFINE_list("tolerances", [str(t) for t in DEFAULT_TOLERANCES],
                  "Regression with patience: how far two exits' values may differ and agree.")
flags.DEFINE_integer("top_k", 2, "K of the top-K rule.")
flags.DEFINE_float("max_drop", 0.5, "Pick the fastest speed within this many metric points of the teacher.")
flags.DEFINE_integer("timing_examples", 200, "Examples timed at batch 1 (wall clock); 0 skips wall-clock timing.")
FLAGS = flags.FLAGS


def _numbers(flag):
    try:
        return [float(s) for s in FLAGS[flag].value]
    except ValueError:
        raise UserInputError(f"--{flag} must be numbers, got {','.join(FLAGS[flag].value)}.") from None


def rules_from_flags(num_layers, task, weights=None):
    """The sweep's exit rules, each validated (a bad one is a UserInputError);
    `weights`: the run's fitted learned rule, for --uncertainty=learned."""
    if not FLAGS.max_drop >= 0:
        raise UserInputError(f"--max_drop must be 0 or more metric points, got {FLAGS.max_drop}.")
    uncertainty = FLAGS.uncertainty or default_uncertainty(task)
    # A flag the chosen rule never reads would be dropped without a word.
    if uncertainty == "patience" and FLAGS["speeds"].present:
        raise UserInputError(
            "--speeds sets entropy or top-K thresholds; the patience rule sweeps every "
            "patience from 1 to L - 2 instead: drop --speeds."
        )
    if not task.regression and FLAGS["tolerances"].present:
        raise UserInputError(
            "--tolerances applies to regression tasks (patience rule) only: drop --tolerances."
        )
    tolerances = _numbers("tolerances") if task.regression else (0.0,)
    if uncertainty == "learned" and weights is None:
        raise UserInputError(
            "the learned rule is fitted after training: train with entropy, then "
            "`python -m msbert_tf.calibrate --uncertainty=learned` and `python -m msbert_tf.evaluate --uncertainty=learned`."
        )
    rules = rules_for(uncertainty, _numbers("speeds"), FLAGS.top_k, num_layers=num_layers, tolerances=tolerances)
    if weights is not None:
        rules = [dataclasses.replace(rule, weights=weights) for rule in rules]
    for rule in rules:
        rule.validate(task.num_labels)
    return rules
