r"""Certify a run's exit threshold on rows it never trained on.

    python -m msbert_tf.calibrate --run_dir=runs/sst2
    python -m msbert_tf.calibrate --run_dir=runs/sst2 --data_file=unlabelled.txt \
        --risk=disagreement --max_risk=0.01 --confidence=0.9

Writes RUN/exit_threshold.json (the default of predict, export and the
SavedModel): with probability `confidence`, the early exit's risk on new
rows like the calibration rows is at most `max_risk`. Without --data_file it
uses the rows training held out of the run.
"""

import json

from absl import flags

from msbert_tf import cli
from msbert_tf.errors import UserInputError
from msbert_tf.inference.risk_control import (
    DEFAULT_CONFIDENCE, DEFAULT_DISAGREEMENT_TOLERANCE, DEFAULT_MAX_RISK, DEFAULT_RISK, RISKS,
    parse_final_exits,
)

flags.DEFINE_string("run_dir", None, "A finished training run folder.")
flags.DEFINE_string("data_file", None, "Calibration rows the model never trained on: the task's layout "
                    "(a GLUE TSV may lack its label column), or plain text (.txt) one example per line. Default: the run's held-out rows.")
flags.DEFINE_enum("risk", DEFAULT_RISK, RISKS, "disagreement with the full model (no labels needed) "
                  "or accuracy_drop (the full model right, the exit wrong; labelled rows).")
flags.DEFINE_float("max_risk", DEFAULT_MAX_RISK, "The risk to stay under, in (0, 1).")
flags.DEFINE_float("confidence", DEFAULT_CONFIDENCE, "Probability, over the calibration rows, that it holds, in (0, 1).")
flags.DEFINE_string("uncertainty", None, "entropy, topk, learned or patience (default: the run's config's, else "
                    "entropy; regression: patience).")
flags.DEFINE_integer("top_k", 2, "K of the top-K rule.")
flags.DEFINE_float("disagreement_tolerance", DEFAULT_DISAGREEMENT_TOLERANCE,
                   "Regression: values further apart than this disagree.")
flags.DEFINE_list("final_exits", None,
                  "The final predictions tried: k averages the last k exits (1: the last exit alone); "
                  "the fastest certified is kept, the choice paid for in confidence. Default: the run "
                  "config's (1,2,3,4 unless it names others).")
FLAGS = flags.FLAGS


def main(argv):
    from msbert_tf.inference.calibration import calibrate_run

    if not FLAGS.run_dir:
        raise UserInputError("--run_dir is required: the run folder to calibrate.")
    record = calibrate_run(
        FLAGS.run_dir, FLAGS.data_file, FLAGS.risk, FLAGS.max_risk, FLAGS.confidence,
        FLAGS.uncertainty, FLAGS.top_k, FLAGS.disagreement_tolerance,
        final_exits=None if FLAGS.final_exits is None else parse_final_exits(FLAGS.final_exits),
    )
    print(record["summary"])
    print(json.dumps(record, indent=2))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
