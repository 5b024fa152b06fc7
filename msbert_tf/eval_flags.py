"""Flags of the early-exit evaluation, shared by the train and evaluate CLIs."""

from absl import flags

from msbert_tf.errors import UserInputError
from msbert_tf.inference.evaluation import DEFAULT_THRESHOLDS, DEFAULT_TOLERANCES, LEARNED_THRESHOLDS

flags.DEFINE_list("thresholds", None, "Exit thresholds to sweep, in [0, 1] (0 runs every layer, 1 exits at the "
                  f"first). Default: {','.join(map(str, DEFAULT_THRESHOLDS))}; the learned rule's, whose uncertainty "
                  f"lives near 0: {','.join(map(str, LEARNED_THRESHOLDS))}.")
flags.DEFINE_alias("speeds", "thresholds")  # the name of earlier versions
flags.DEFINE_list("tolerances", [str(t) for t in DEFAULT_TOLERANCES],
                  "Regression with patience: how far two exits' values may differ and agree.")
flags.DEFINE_integer("top_k", 2, "K of the top-K rule.")
flags.DEFINE_float("max_drop", 0.5, "Pick the fastest threshold within this many metric points of the teacher.")
flags.DEFINE_integer("timing_examples", 200, "Examples timed at batch 1 (wall clock); 0 skips wall-clock timing.")
FLAGS = flags.FLAGS


def _numbers(flag):
    """The flag's numbers, or None when it was not given (the library's default)."""
    if not FLAGS[flag].present:
        return None
    try:
        return [float(s) for s in FLAGS[flag].value]
    except ValueError:
        raise UserInputError(f"--{flag} must be numbers, got {','.join(FLAGS[flag].value)}.") from None


def sweep_settings(uncertainty):
    """The evaluation flags, with the exit rule each command takes its own
    way, as keyword arguments of `evaluate_file` / `sweep_rules`."""
    return {"uncertainty": uncertainty, "thresholds": _numbers("thresholds"), "top_k": FLAGS.top_k,
            "tolerances": _numbers("tolerances")}
