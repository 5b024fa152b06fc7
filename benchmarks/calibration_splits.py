"""Does the certified threshold keep its promise on rows it was not chosen on?

    python benchmarks/calibration_splits.py --run_dir=runs/sst2 \
        --dev_file=../shared/data/glue/SST-2/dev.tsv [--splits=20] [--sizes=500,1000,2000,4000]

Every exit's outputs are computed once on the run's held-out training rows
(its calibration slice, never trained on) and on `--dev_file`. Then:

1. halves: 20 random splits of the held-out rows into calibration and test
   halves; calibrate on one, read the other: how often the test risk is
   above `max_risk` (the guarantee allows `1 - confidence` of the time),
   the FLOPs speed-up, and the same for the uncertified pick (the largest
   speed whose accuracy on the calibration half is within `100 max_risk`
   points of the full model's: what `--max_drop` does on dev).
2. sizes: calibration sets of each size drawn from the held-out rows, read
   on the rest: how the speed-up grows with the number of rows.
3. transfer: calibrated on held-out training rows, read on `--dev_file`
   (for SST-2: phrases of every length against whole sentences).
"""

import dataclasses
import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import record  # noqa: E402

from msbert_tf.data import pipeline, readers  # noqa: E402
from msbert_tf.inference import flops  # noqa: E402
from msbert_tf.inference.calibration import THRESHOLDS, calibrate, fit_exit_model, oracle_exit_layers, row_losses  # noqa: E402
from msbert_tf.inference.early_exit import exit_outputs, predictions_of, simulate, with_final  # noqa: E402
from msbert_tf.inference.exit_metrics import exit_logits  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.predict import learned_weights  # noqa: E402
from msbert_tf.inference.sweep import flops_speedup  # noqa: E402
from msbert_tf.inference.uncertainty import ExitRule  # noqa: E402

flags.DEFINE_string("run_dir", None, "A finished run with held-out calibration rows.")
flags.DEFINE_string("dev_file", None, "Labelled rows of the task read as a second test set.")
flags.DEFINE_integer("splits", 20, "Random splits per study.")
flags.DEFINE_list("sizes", ["500", "1000", "2000", "4000"], "Calibration set sizes.")
flags.DEFINE_float("max_risk", 0.01, "Disagreement bound.")
flags.DEFINE_float("confidence", 0.9, "Confidence of the bound.")
flags.DEFINE_list("uncertainties", ["entropy", "learned"], "Exit rules to compare (learned: fitted on "
                  "training rows if the run has no RUN/exit_model.json yet).")
flags.DEFINE_string("output", None, "Where to write the numbers (JSON).")
flags.DEFINE_enum("pool", "held_out", ["held_out", "dev"], "Rows split into calibration and test: the run's "
                  "held-out training rows, or --dev_file's rows.")
flags.DEFINE_bool("sentences", False, "Keep only pool rows that end as a sentence does (. ! ?): "
                  "SST-2's training file is mostly phrases, its dev and test sets sentences.")
flags.DEFINE_integer("min_tokens", None, "Keep only pool rows of at least this many tokens ([CLS], [SEP] "
                     "included): a sentence-like slice of a file of phrases.")
flags.DEFINE_list("final_exits", ["1"], "The final predictions calibrate tries (the mean of the last k exits), "
                  "as `python -m msbert_tf.calibrate --final_exits`; 1: the last exit alone.")
FLAGS = flags.FLAGS


class Rows:
    """Every exit's outputs, labels and lengths of a set of rows."""

    def __init__(self, trained, examples):
        split = pipeline.encode(examples, trained.preprocessor, name="rows")
        logits = exit_logits(trained.classifier, split, 128)
        self.probs = np.asarray(exit_outputs(tf.constant(logits)))
        self.labels, self.lengths = split.labels, split.lengths
        self.texts = np.asarray(examples.text_a, dtype=object)

    FIELDS = ("probs", "labels", "lengths", "texts")

    def take(self, index):
        return self._with(lambda name: getattr(self, name)[index])

    def concat(self, other):
        return self._with(lambda name: np.concatenate([getattr(self, name), getattr(other, name)]))

    def _with(self, value):
        rows = object.__new__(Rows)
        for name in self.FIELDS:
            setattr(rows, name, value(name))
        return rows

    def __len__(self):
        return len(self.labels)


def read(rows, rule, spec):
    """(disagreement, accuracy drop in points, FLOPs speed-up) of `rule` on `rows`."""
    result = simulate(rows.probs, rule)
    final = with_final(rows.probs, rule.final_exits)
    disagreement = float(np.mean(row_losses(final, result.probs, "disagreement")))
    full = predictions_of(final[:, -1])
    drop = 100 * (np.mean(full == rows.labels) - np.mean(result.labels == rows.labels))
    return disagreement, float(drop), flops_speedup(result.exit_layers, rows.lengths, spec)


def curve(rows, rule):
    """(speed, simulated result, accuracy drop in points) along a 0.005 grid of speeds."""
    full = np.mean(predictions_of(rows.probs[:, -1]) == rows.labels)
    for speed in np.linspace(0, 1, 201):
        result = simulate(rows.probs, dataclasses.replace(rule, threshold=float(speed)))
        yield float(speed), result, 100 * (full - np.mean(result.labels == rows.labels))


def dev_pick(rows, rule, points):
    """The uncertified pick: the largest speed within `points` of the full model's accuracy."""
    best = max((speed for speed, _, drop in curve(rows, rule) if drop <= points), default=0.0)
    return dataclasses.replace(rule, threshold=best)


def random_halves(pool, rng):
    """`--splits` random (calibration, test) halves of `pool`."""
    for _ in range(FLAGS.splits):
        order = rng.permutation(len(pool))
        yield pool.take(order[: len(pool) // 2]), pool.take(order[len(pool) // 2:])


def certified_rule(rows, rule, spec, weights=None):
    """The rule `calibrate` certifies on `rows`, trying `--final_exits`;
    `weights`: the learned rule's coefficients for each final."""
    finals = tuple(int(k) for k in FLAGS.final_exits)
    if weights is None and rule.weights is not None:  # one learned rule, for the last exit alone
        weights, finals = {1: rule.weights}, (1,)
    record = calibrate(rows.probs, rows.lengths, spec, max_risk=FLAGS.max_risk, confidence=FLAGS.confidence,
                       uncertainty=rule.kind, weights=weights, final_exits=finals)
    k = record["final_exits"]
    return dataclasses.replace(rule, threshold=record["threshold"], final_exits=k,
                               weights=weights[k] if weights else None)


def summary(values):
    values = np.asarray(values, float)
    return {"mean": round(float(values.mean()), 4), "sd": round(float(values.std(ddof=1)), 4),
            "min": round(float(values.min()), 4), "max": round(float(values.max()), 4)}


def study(rule, pool, dev, spec, rng, weights=None):
    out = {}
    halves = {"certified": [], "dev_pick": []}
    for cal, test in random_halves(pool, rng):
        for name, chosen in (("certified", certified_rule(cal, rule, spec, weights)),
                             ("dev_pick", dev_pick(cal, rule, 100 * FLAGS.max_risk))):
            halves[name].append((chosen.threshold, *read(test, chosen, spec), chosen.final_exits))
    out["halves"] = {
        name: {
            "calibration_rows": len(pool) // 2,
            "threshold": summary([r[0] for r in rows]),
            "test_disagreement": summary([r[1] for r in rows]),
            "test_accuracy_drop_points": summary([r[2] for r in rows]),
            "flops_speedup": summary([r[3] for r in rows]),
            "final_exits_chosen": {str(k): int(np.sum([r[4] == k for r in rows])) for k in sorted({r[4] for r in rows})},
            # Certified: disagreement above max_risk; dev pick: its own promise, accuracy.
            "violation_frequency": float(np.mean(
                [(r[1] if name == "certified" else r[2] / 100) > FLAGS.max_risk for r in rows])),
        }
        for name, rows in halves.items()
    }
    out["sizes"] = {}
    for size in (int(s) for s in FLAGS.sizes):
        if size >= len(pool):
            continue
        rows = []
        for _ in range(FLAGS.splits):
            order = rng.permutation(len(pool))
            chosen = certified_rule(pool.take(order[:size]), rule, spec, weights)
            test = read(pool.take(order[size:]), chosen, spec)
            on_dev = read(dev, chosen, spec) if dev is not None else (np.nan,) * 3
            rows.append((chosen.threshold, *test, *on_dev))
        out["sizes"][size] = {
            "flops_speedup_held_out": summary([r[3] for r in rows]),
            "violation_frequency_held_out": float(np.mean([r[1] > FLAGS.max_risk for r in rows])),
            "flops_speedup_dev": summary([r[6] for r in rows]),
            "dev_disagreement": summary([r[4] for r in rows]),
            "dev_accuracy_drop_points": summary([r[5] for r in rows]),
            "violation_frequency_dev": float(np.mean([r[4] > FLAGS.max_risk for r in rows])),
        }
    return out


def risk_curve(rows, rule, spec):
    """The true-risk side of the limit: (threshold, FLOPs speed-up,
    disagreement) on `rows` along the calibration grid, up to the first
    point past 3 times `max_risk`. Where the disagreement on many unseen
    rows is above `max_risk`, no calibration set certifies that speed-up."""
    points = []
    for threshold in THRESHOLDS:
        disagreement, _, speedup = read(rows, dataclasses.replace(rule, threshold=float(threshold)), spec)
        points.append((float(threshold), round(speedup, 3), round(disagreement, 5)))
        if disagreement > 3 * FLAGS.max_risk:
            break
    return points


def ceilings(rows, rule, spec, weights=None):
    """{final k: the largest FLOPs speed-up whose disagreement on all of
    `rows` is at most `max_risk`}: what a calibration set of unlimited size
    drawn like `rows` could certify, for each final of `--final_exits`."""
    out = {}
    for k in (int(k) for k in FLAGS.final_exits):
        final = dataclasses.replace(rule, final_exits=k, weights=weights[k] if weights else rule.weights)
        out[k] = max((speedup for _, speedup, disagreement in risk_curve(rows, final, spec)
                      if disagreement <= FLAGS.max_risk), default=1.0)
    return out


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    spec = flops.model_spec(trained.classifier)
    dev = Rows(trained, readers.read_file(trained.task, FLAGS.dev_file)) if FLAGS.dev_file else None
    pool = dev if FLAGS.pool == "dev" else Rows(trained, trained.run.load_calibration_rows(trained.task))
    if FLAGS.min_tokens:
        pool = pool.take(np.flatnonzero(pool.lengths >= FLAGS.min_tokens))
    if FLAGS.sentences:
        pool = pool.take(np.flatnonzero([t.rstrip()[-1:] in ".!?" for t in pool.texts]))
    out = {"run_dir": FLAGS.run_dir, "task": trained.task.name, "pool": FLAGS.pool, "pool_rows": len(pool),
           "min_tokens": FLAGS.min_tokens, "sentences": FLAGS.sentences,
           "max_risk": FLAGS.max_risk, "confidence": FLAGS.confidence,
           "oracle_held_out": round(flops_speedup(oracle_exit_layers(pool.probs), pool.lengths, spec), 3)}
    if dev is not None:
        out["oracle_dev"] = round(flops_speedup(oracle_exit_layers(dev.probs), dev.lengths, spec), 3)

    out["final_exits_tried"] = [int(k) for k in FLAGS.final_exits]
    for kind in FLAGS.uncertainties:
        weights = None
        if kind == "learned":
            model = trained.run.load_exit_model()
            if model is None or not set(FLAGS.final_exits) <= set(model["weights_by_final_exits"]):
                model = fit_exit_model(trained, final_exits=(1, *map(int, FLAGS.final_exits)))
            weights = {k: learned_weights(trained, k) for k in (1, *map(int, FLAGS.final_exits))}
            out["exit_model_rows"] = model["rows"]
        rule = ExitRule(kind, weights=weights and weights[1])
        out[kind] = study(rule, pool, dev, spec, np.random.default_rng(0), weights)
        if dev is not None and FLAGS.pool == "held_out":
            unseen = pool.concat(dev)
            out[kind]["risk_curve_pool_and_dev"] = risk_curve(unseen, rule, spec)
            out[kind]["ceiling_pool_and_dev"] = ceilings(unseen, rule, spec, weights)
    record(out)
    print(json.dumps(out, indent=2))


def record(out):
    """Stamps `out` with the machine and the commit and writes it to --output, when given."""
    record(out, FLAGS.output)


if __name__ == "__main__":
    flags.mark_flag_as_required("run_dir")
    app.run(main)
