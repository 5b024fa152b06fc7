"""The final prediction as the mean of the last exits: does early exit agree with it more? (issues 18 and 19)

    python benchmarks/final_ensemble.py --run_dir=runs/sst2 \
        --dev_file=../shared/data/glue/SST-2/dev.tsv [--starts=3,4,5] --output=final.json

Every exit's probabilities are computed on the way to the last layer, so a
final prediction made of the mean of exits k..L costs nothing more. For
each k (and the teacher's own output), the rows' "full model" becomes that
mean, and the script reads what `calibration_splits.py` reads: its accuracy
on the held-out rows and on `--dev_file`, and for the entropy and learned
rules (the learned rule refitted, label-free, on the run's training rows
against the new final) the ceiling on all unseen rows (the largest FLOPs
speed-up at `max_risk` disagreement) and the certified speed-up on
`--splits` random halves of the held-out rows.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import calibration_splits as splits  # noqa: E402  (its flags are this script's)
from calibration_splits import FLAGS, Rows  # noqa: E402
from exit_rule_sources import ceiling, learned  # noqa: E402

from msbert_tf.data import readers  # noqa: E402
from msbert_tf.inference import flops  # noqa: E402
from msbert_tf.inference.calibration import exit_model_rows  # noqa: E402
from msbert_tf.inference.early_exit import predictions_of, with_final  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.uncertainty import ExitRule  # noqa: E402

flags.DEFINE_list("starts", ["3", "4", "5"], "First exit (1-based) of the mean that replaces the final prediction.")


def final_rows(rows, start):
    """`rows` whose last exit is the mean of exits `start`..L (the teacher's own output for None)."""
    if start is None:
        return rows
    probs = with_final(rows.probs, rows.probs.shape[1] - start + 1)
    return rows._with(lambda name: probs if name == "probs" else getattr(rows, name))


def accuracy(rows):
    return round(100 * float(np.mean(predictions_of(rows.probs[:, -1]) == rows.labels)), 2)


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    spec = flops.model_spec(trained.classifier)
    held = Rows(trained, trained.run.load_calibration_rows(trained.task))
    dev = Rows(trained, readers.read_file(trained.task, FLAGS.dev_file))
    train = Rows(trained, exit_model_rows(trained))
    out = {"run_dir": FLAGS.run_dir, "held_out_rows": len(held), "dev_rows": len(dev), "max_risk": FLAGS.max_risk,
           "confidence": FLAGS.confidence, "finals": {}}
    for start in [None] + [int(s) for s in FLAGS.starts]:
        final_held, final_dev = final_rows(held, start), final_rows(dev, start)
        name = "teacher" if start is None else f"mean of exits {start}-{held.probs.shape[1]}"
        result = {"held_out_accuracy": accuracy(final_held), "dev_accuracy": accuracy(final_dev)}
        for kind, rule in (("entropy", ExitRule("entropy")), ("learned", learned(final_rows(train, start).probs))):
            certified = [splits.read(test, splits.certified_rule(cal, rule, spec), spec)[2]
                         for cal, test in splits.random_halves(final_held, np.random.default_rng(0))]
            result[kind] = {
                "ceiling_unseen": ceiling(splits.risk_curve(final_held.concat(final_dev), rule, spec)),
                "halves_mean": round(float(np.mean(certified)), 3), "halves_sd": round(float(np.std(certified, ddof=1)), 3),
            }
        out["finals"][name] = result
        print(name, json.dumps(result), flush=True)
    splits.record(out)


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file"])
    app.run(main)
