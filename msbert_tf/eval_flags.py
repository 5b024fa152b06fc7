"""Flags of the early-exit evaluation, shared by the train and evaluate CLIs."""

from absl import flags

from msbert_tf.errors import UserInputError
from msbert_tf.inference.evaluation import DEFAULT_SPEEDS, rules_for

flags.DEFINE_list("speeds", [str(s) for s in DEFAULT_SPEEDS], "Exit thresholds to sweep, in [0, 1].")
flags.DEFINE_string("uncertainty", "entropy", "Exit rule: entropy, topk or patience.")
flags.DEFINE_integer("top_k", 2, "K of the top-K rule.")
flags.DEFINE_float("max_drop", 0.5, "Pick the fastest speed within this many metric points of the teacher.")
flags.DEFINE_integer("timing_examples", 200, "Examples timed at batch 1 (wall clock); 0 skips wall-clock timing.")
FLAGS = flags.FLAGS


def rules_from_flags(num_layers, num_labels):
    """The sweep's exit rules, each validated (a bad one is a UserInputError)."""
    try:
        speeds = [float(s) for s in FLAGS.speeds]
    except ValueError:
        raise UserInputError(f"--speeds must be numbers in [0, 1], got {','.join(FLAGS.speeds)}.") from None
    rules = rules_for(FLAGS.uncertainty, speeds, FLAGS.top_k, num_layers=num_layers)
    for rule in rules:
        rule.validate(num_labels)
    return rules
