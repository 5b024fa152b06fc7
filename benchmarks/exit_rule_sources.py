"""Where should the learned rule be fitted, and do exit ensembles help? (issue 19)

    python benchmarks/exit_rule_sources.py --run_dir=runs/sst2 \
        --dev_file=../shared/data/glue/SST-2/dev.tsv --sizes=500,1000,2000 --output=sources.json

For a run that holds out whole training sentences
(`calibration_source=held_out_sentences`), the rows the model never trained
on are of two kinds: the held-out sentences (dev-like: they calibrate) and
the phrases only they contained (short, unseen, used by nothing). The
learned rule is fitted, label-free, on (a) 8,000 training rows, as training
does, (b) the held-out phrases, (c) both; each is then read as
`calibration_splits.py` reads a rule: certified on held-out sentences
(halves and sizes, read on the rest and on `--dev_file`), and the risk curve
on all unseen sentences (where 1% disagreement is reached: no calibration
set certifies more). Exit ensembles: each exit's prediction replaced by the
mean of the probabilities of the exits so far (the full model's stays), read
on the same curve with the entropy rule and the learned rule fitted on the
ensembled phrases.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import calibration_splits as splits  # noqa: E402  (its flags are this script's)
from calibration_splits import FLAGS, Rows  # noqa: E402

from msbert_tf.data import readers  # noqa: E402
from msbert_tf.data.sentences import hold_out_sentences  # noqa: E402
from msbert_tf.inference import flops, learned_exit  # noqa: E402
from msbert_tf.inference.calibration import exit_model_rows  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.uncertainty import ExitRule  # noqa: E402


def held_out_phrases(trained):
    """(held-out sentences, the phrases only they hold, the learned rule's training rows) as the run split them."""
    data = trained.config.data
    train = readers.read_split(trained.task, "train", data.data_dir)
    rest, held = hold_out_sentences(train, data.calibration_fraction, data.max_calibration_examples,
                                    trained.config.seed)
    kept = set(rest.text_a) | set(held.text_a)
    phrases = train.select(np.asarray([i for i, text in enumerate(train.text_a) if text not in kept]))
    return held, phrases, exit_model_rows(trained)


def ensembled(rows):
    """`rows` with each exit but the last replaced by the mean of the exits so far."""
    means = np.cumsum(rows.probs, axis=1) / np.arange(1, rows.probs.shape[1] + 1)[None, :, None]
    probs = rows.probs.copy()
    probs[:, :-1] = means[:, :-1]
    return rows._with(lambda name: probs if name == "probs" else getattr(rows, name))


def learned(probs):
    return ExitRule("learned", weights=tuple(map(tuple, learned_exit.fit(probs).tolist())))


def ceiling(points):
    """The largest FLOPs speed-up on the risk curve with disagreement at most `max_risk`."""
    return max((speedup for _, speedup, risk in points if risk <= FLAGS.max_risk), default=1.0)


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    if trained.config.data.calibration_source != "held_out_sentences":
        raise SystemExit(f"{FLAGS.run_dir} does not hold out whole sentences (calibration_source).")
    spec = flops.model_spec(trained.classifier)
    held, phrases, train = (Rows(trained, rows) for rows in held_out_phrases(trained))
    dev = Rows(trained, readers.read_file(trained.task, FLAGS.dev_file))
    unseen = held.concat(dev)
    out = {"run_dir": FLAGS.run_dir, "held_out_sentences": len(held), "held_out_phrases": len(phrases),
           "training_rows": len(train), "dev_rows": len(dev), "max_risk": FLAGS.max_risk,
           "confidence": FLAGS.confidence}
    rules = {
        "entropy": ExitRule("entropy"),
        "learned, fitted on training rows": learned(train.probs),
        "learned, fitted on held-out phrases": learned(phrases.probs),
        "learned, fitted on both": learned(np.concatenate([train.probs, phrases.probs])),
    }
    for name, rule in rules.items():
        study = splits.study(rule, held, dev, spec, np.random.default_rng(0))
        out[name] = {"ceiling_unseen": ceiling(splits.risk_curve(unseen, rule, spec)),
                     "halves": study["halves"]["certified"], "sizes": study["sizes"]}
        print(name, json.dumps(out[name]), flush=True)
    ensemble = ensembled(unseen)
    out["ensemble"] = {
        "entropy": ceiling(splits.risk_curve(ensemble, ExitRule("entropy"), spec)),
        "learned, fitted on held-out phrases": ceiling(
            splits.risk_curve(ensemble, learned(ensembled(phrases).probs), spec)),
    }
    print("ensemble", json.dumps(out["ensemble"]), flush=True)
    splits.record(out)


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file"])
    app.run(main)
