"""Per-exit thresholds inside a valid procedure: do they certify more? (issues 18 and 19)

    python benchmarks/per_exit_thresholds.py --run_dir=runs/sst2 \
        --dev_file=../shared/data/glue/SST-2/dev.tsv --output=per_exit.json

One threshold for every exit is a one-parameter family. A per-exit family
that stays valid: threshold `t * s_l` at exit l (capped at 1), for a shape
`s_l = (l / (L - 1)) ** gamma` from a small grid of `--gammas` (0 is the
single threshold); each shape is calibrated by fixed-sequence testing over
`t` at confidence `1 - (1 - confidence) / m` (Bonferroni over the m shapes),
and the fastest certified (shape, t) on the calibration rows is chosen, so
the guarantee holds at `confidence` for the choice. Read as
`calibration_splits.py` reads a rule: `--splits` random halves of the
run's held-out rows (certify on one, read the FLOPs speed-up and the
disagreement on the other), and the ceiling: the largest FLOPs speed-up
whose disagreement on all unseen rows (held-out and `--dev_file`) is at
most `max_risk`, per shape.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

import calibration_splits as splits  # noqa: E402  (its flags are this script's)
from calibration_splits import FLAGS, Rows  # noqa: E402

from msbert_tf.data import readers  # noqa: E402
from msbert_tf.inference import flops  # noqa: E402
from msbert_tf.inference.calibration import THRESHOLDS, fit_exit_model  # noqa: E402
from msbert_tf.inference.early_exit import predictions_of  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.risk_control import fixed_sequence  # noqa: E402
from msbert_tf.inference.uncertainty import ExitRule  # noqa: E402

flags.DEFINE_list("gammas", ["-1", "-0.5", "0", "0.5", "1"], "Shapes s_l = (l / (L - 1)) ** gamma.")


class Exits:
    """What any threshold needs of a set of rows: each exit's uncertainty
    under one rule, whether its label agrees with the full model's, and the
    FLOPs of stopping there (the teacher's FLOPs of the same rows come from
    `teacher_of`). A threshold per exit is not an `ExitRule`, so the exit
    decision is made here on these arrays."""

    def __init__(self, rows, agrees, path, rule):
        # The last exit is the full model: no decision there.
        self.uncertainty = np.asarray(rule.uncertainty(rows.probs[:, :-1]))
        self.agrees, self.path = agrees, path

    def take(self, index):
        exits = object.__new__(Exits)
        exits.uncertainty, exits.agrees, exits.path = self.uncertainty[index], self.agrees[index], self.path[index]
        return exits

    def exit_layers(self, shape, threshold):
        """0-based exit of each row: the first exit whose uncertainty is at most its threshold, else the last."""
        sure = self.uncertainty <= (threshold * shape)[None, :]
        sure = np.hstack([sure, np.ones((len(sure), 1), bool)])
        return sure.argmax(axis=1)

    def read(self, shape, threshold, teacher_flops):
        """(disagreement, FLOPs speed-up) at one (shape, threshold)."""
        exits = self.exit_layers(shape, threshold)
        rows = np.arange(len(exits))
        return float(np.mean(~self.agrees[rows, exits])), teacher_flops / float(self.path[rows, exits].sum())


def shapes(layers):
    position = np.arange(1, layers) / (layers - 1)
    return {gamma: position ** float(gamma) for gamma in FLAGS.gammas}


def agreement_and_flops(rows, spec):
    """Whether each exit's label equals the last's (B x L), and each exit's path FLOPs (B x L)."""
    labels = predictions_of(rows.probs)
    layers = rows.probs.shape[1]
    path = np.asarray([[flops.path_flops(e, int(t), spec) for e in range(1, layers + 1)] for t in rows.lengths])
    return labels == labels[:, -1:], path


def certify(exits, teacher_flops, family):
    """The fastest (gamma, threshold) certified over `family`, Bonferroni over its shapes."""
    confidence = 1 - (1 - FLAGS.confidence) / len(family)
    best = (None, 0.0, 1.0)
    for gamma, shape in family.items():
        losses = np.stack([~exits.agrees[np.arange(len(exits.agrees)), exits.exit_layers(shape, t)] for t in THRESHOLDS])
        chosen = fixed_sequence(losses, FLAGS.max_risk, confidence).chosen
        if chosen >= 0:
            speed = exits.read(shape, THRESHOLDS[chosen], teacher_flops)[1]
            if speed > best[2]:
                best = (gamma, THRESHOLDS[chosen], speed)
    return best


def ceiling(exits, teacher_flops, shape):
    return max([1.0] + [s for d, s in (exits.read(shape, t, teacher_flops) for t in THRESHOLDS) if d <= FLAGS.max_risk])


def teacher_of(rows, spec):
    return float(sum(flops.teacher_flops(int(t), spec) for t in rows.lengths))


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    spec = flops.model_spec(trained.classifier)
    pool = Rows(trained, trained.run.load_calibration_rows(trained.task))
    unseen = pool.concat(Rows(trained, readers.read_file(trained.task, FLAGS.dev_file)))
    family = shapes(pool.probs.shape[1])
    single = {"single": np.ones(pool.probs.shape[1] - 1)}
    pool_facts, unseen_facts = agreement_and_flops(pool, spec), agreement_and_flops(unseen, spec)
    # One set of halves for both families and both rules.
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(pool)) for _ in range(FLAGS.splits)]
    out = {"run_dir": FLAGS.run_dir, "pool_rows": len(pool), "unseen_rows": len(unseen), "gammas": FLAGS.gammas,
           "max_risk": FLAGS.max_risk, "confidence": FLAGS.confidence}
    learned = tuple(tuple(row) for row in (trained.run.load_exit_model() or fit_exit_model(trained))["weights_by_final_exits"]["1"])
    for rule in (ExitRule("entropy"), ExitRule("learned", weights=learned)):
        exits, every = Exits(pool, *pool_facts, rule), Exits(unseen, *unseen_facts, rule)
        result = {"ceiling_unseen": {gamma: round(ceiling(every, teacher_of(unseen, spec), shape), 3)
                                     for gamma, shape in family.items()}}
        for name, candidates in (("single", single), ("per_exit", family)):
            halves = []
            for order in orders:
                cal, test = order[: len(pool) // 2], order[len(pool) // 2:]
                gamma, threshold, _ = certify(exits.take(cal), teacher_of(pool.take(cal), spec), candidates)
                # Nothing certified: threshold 0, the full model, whatever the shape.
                shape = candidates[gamma] if gamma is not None else single["single"]
                disagreement, speed = exits.take(test).read(shape, threshold, teacher_of(pool.take(test), spec))
                halves.append((speed, disagreement, gamma))
            speeds = np.asarray([h[0] for h in halves])
            result[name] = {"speedup_mean": round(float(speeds.mean()), 3), "speedup_sd": round(float(speeds.std(ddof=1)), 3),
                            "violations": float(np.mean([h[1] > FLAGS.max_risk for h in halves])),
                            "gammas_chosen": [h[2] for h in halves]}
        out[rule.kind] = result
        print(rule.kind, json.dumps(result), flush=True)
    splits.record(out)


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file"])
    app.run(main)
