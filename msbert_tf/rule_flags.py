"""Flags that choose one exit rule, shared by the predict and export CLIs
(the arguments of `default_rule`; default: the run's certified rule)."""

from absl import flags

flags.DEFINE_float("threshold", None, "Exit threshold in [0, 1]: 0 runs every layer, 1 exits at the first "
                   "(default: the run's certified one).")
flags.DEFINE_alias("speed", "threshold")  # the name of earlier versions
flags.DEFINE_string("uncertainty", None, "entropy, topk, learned or patience (default: the run's).")
flags.DEFINE_integer("top_k", None, "K of the top-K rule.")
flags.DEFINE_integer("patience", None, "The patience rule's count of agreeing exits.")
FLAGS = flags.FLAGS


def rule_settings():
    """The flags as keyword arguments of `default_rule` after the run."""
    return {"threshold": FLAGS.threshold, "uncertainty": FLAGS.uncertainty, "top_k": FLAGS.top_k,
            "patience": FLAGS.patience}
