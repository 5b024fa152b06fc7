"""EMD against KL and CE over stage-2 seeds on one teacher: mean and spread.

    python benchmarks/loss_seeds.py --teacher_run=runs/trec6 --output_dir=runs/trec6_losses \
        --dev_file=../shared/data/trec/TREC_10.label [--losses=emd,kl,ce] [--seeds=1,2,3]

Distils the exit heads with each loss and each stage-2 seed (`distill.seed`)
from the teacher of --teacher_run (a finished run that held out calibration
rows), one resumable run folder each, and reads every variant the same way:

- certified: `--splits` random halves of the held-out rows; calibrate
  (disagreement at most `--max_risk` with `--confidence`) on one half, read
  the FLOPs speed-up and the disagreement on the other;
- the curve on `--dev_file`: the largest FLOPs speed-up whose accuracy is
  within 0.5 (and 1.5) points of the full model's, on a 0.005 grid of speeds.

Writes losses.json (each variant, after each) and losses.md (mean and sample
standard deviation over seeds per loss) into --output_dir.
"""

import copy
import json
import os
import sys

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import calibration_splits as splits  # noqa: E402  (its Rows, read and calibration flags)
from machine import commit, machine  # noqa: E402

from msbert_tf.data import readers  # noqa: E402
from msbert_tf.inference import flops  # noqa: E402
from msbert_tf.inference.calibration import fit_exit_model, oracle_exit_layers  # noqa: E402
from msbert_tf.inference.early_exit import predictions_of  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.sweep import flops_speedup  # noqa: E402
from msbert_tf.inference.uncertainty import ExitRule  # noqa: E402
from msbert_tf.run_dir import RunDir, write_atomically  # noqa: E402
from msbert_tf.training.trainer import train  # noqa: E402

flags.DEFINE_string("teacher_run", None, "A finished run with held-out calibration rows.")
flags.DEFINE_string("output_dir", None, "Where the variants' runs and the table go.")
flags.DEFINE_list("losses", ["emd", "kl", "ce"], "Stage-2 losses.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Stage-2 seeds (distill.seed).")
flags.DEFINE_list("rules", ["entropy", "learned"], "Exit rules read for every variant.")
FLAGS = flags.FLAGS

DROPS = (0.5, 1.5)


def curve_within(rows, rule, spec, points):
    """The largest FLOPs speed-up on `rows` whose accuracy is within `points` of the full model's."""
    # Threshold 0 costs the heads' FLOPs on top of the teacher's: at least 1.
    return max([1.0] + [flops_speedup(result.exit_layers, rows.lengths, spec)
                        for _, result, drop in splits.curve(rows, rule) if drop <= points])


def measure(folder, dev_file):
    trained = load_run(folder)
    spec = flops.model_spec(trained.classifier)
    pool = splits.Rows(trained, trained.run.load_calibration_rows(trained.task))
    dev = splits.Rows(trained, readers.read_file(trained.task, dev_file))
    out = {
        "full_model_dev_accuracy": round(100 * float(np.mean(predictions_of(dev.probs[:, -1]) == dev.labels)), 2),
        "exit_dev_accuracy": [round(100 * float(np.mean(predictions_of(dev.probs[:, i]) == dev.labels)), 2)
                              for i in range(dev.probs.shape[1])],
        "oracle_dev": round(flops_speedup(oracle_exit_layers(dev.probs), dev.lengths, spec), 3),
        "oracle_held_out": round(flops_speedup(oracle_exit_layers(pool.probs), pool.lengths, spec), 3),
    }
    for kind in FLAGS.rules:
        weights = None
        if kind == "learned":
            weights = tuple(tuple(row) for row in fit_exit_model(trained)["weights_by_final_exits"]["1"])
        rule = ExitRule(kind, weights=weights)
        rng = np.random.default_rng(0)
        certified = []
        for cal, test in splits.random_halves(pool, rng):
            disagreement, _, speedup = splits.read(test, splits.certified_rule(cal, rule, spec), spec)
            certified.append((speedup, disagreement))
        out[kind] = {
            "certified_speedup": round(float(np.mean([c[0] for c in certified])), 3),
            "certified_test_disagreement": round(float(np.mean([c[1] for c in certified])), 4),
            "violation_frequency": float(np.mean([c[1] > FLAGS.max_risk for c in certified])),
            **{f"dev_within_{p}": round(curve_within(dev, rule, spec, p), 3) for p in DROPS},
        }
    return out


def table(results):
    keys = [(kind, key) for kind in FLAGS.rules for key in ("certified_speedup", *[f"dev_within_{p}" for p in DROPS])]
    lines = [
        "| loss | seeds | full model dev | " + " | ".join(f"{kind}: {key}" for kind, key in keys) + " |",
        "|---" * (3 + len(keys)) + "|",
    ]
    for loss in FLAGS.losses:
        done = [r for r in results.values() if r["loss"] == loss]
        if not done:
            continue

        def cell(values):
            values = np.asarray(values, float)
            sd = values.std(ddof=1) if len(values) > 1 else float("nan")
            return f"{values.mean():.2f} ± {sd:.2f}"

        lines.append(
            f"| {loss} | {len(done)} | {cell([r['full_model_dev_accuracy'] for r in done])} | "
            + " | ".join(cell([r[kind][key] for r in done]) for kind, key in keys) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    base = RunDir(FLAGS.teacher_run).load_config()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = os.path.join(FLAGS.output_dir, "losses.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    for loss in FLAGS.losses:
        for seed in (int(s) for s in FLAGS.seeds):
            name = f"{loss}_seed{seed}"
            if name in results:
                continue
            config = copy.deepcopy(base)
            config.distill.loss, config.distill.seed = loss, seed
            config.teacher_from = FLAGS.teacher_run
            folder = os.path.join(FLAGS.output_dir, name)
            train(config, folder, verbose=2)
            results[name] = {"loss": loss, "seed": seed, **measure(folder, FLAGS.dev_file)}
            results[name]["commit"], results[name]["machine"] = commit(), machine()
            print(json.dumps(results[name]), flush=True)
            write_atomically(path, json.dumps(results, indent=2))
            write_atomically(os.path.join(FLAGS.output_dir, "losses.md"), table(results))
    print(table(results))


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher_run", "output_dir", "dev_file"])
    app.run(main)
