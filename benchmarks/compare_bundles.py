"""Two export benchmarks' graphs timed side by side in one process: did a change of the graphs pay?

    python benchmarks/compare_bundles.py --run_dir=runs/sst2 --before_dir=runs/sst2/bench_a \
        --after_dir=runs/sst2/bench_b --data_dir=../shared/data/glue [--output=compare.json]

`--before_dir` and `--after_dir` are `--output_dir`s of `export_sst2.py`
(their `tflite_<mode>` bundles and `teacher_<mode>.tflite` graphs), say from
two commits. On every dev sentence at batch 1, for each mode and thread
count: the stage chain at its bundle's threshold and the whole-teacher graph
of each folder, all four in alternating passes (this machine's speed drifts
between passes by more than such changes), with each chain's FLOPs speed-up
on its own exits and the share of exit layers the two chains agree on.
"""

import json
import os

import numpy as np
from absl import app, flags
from export_sst2 import flops_ratios, interleaved
from machine import record

from msbert_tf.data import readers
from msbert_tf.export.runner import LiteRTRunner, Stage
from msbert_tf.inference import flops
from msbert_tf.inference.loading import load_run
from msbert_tf.inference.sweep import flops_speedup

flags.DEFINE_string("before_dir", None, "An export_sst2.py --output_dir.")
flags.DEFINE_string("after_dir", None, "Another, timed against it.")
flags.DEFINE_string("output", None, "Where the results go (JSON).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    spec = flops.model_spec(trained.classifier)
    dev = readers.read_split(trained.task, "dev", FLAGS.data_dir).take(FLAGS.max_examples)
    folders = {"before": FLAGS.before_dir, "after": FLAGS.after_dir}
    encoded = [LiteRTRunner(os.path.join(FLAGS.before_dir, "tflite_none")).encode(t) for t in dev.text_a]
    lengths = np.asarray([ids["token_ids"].shape[1] for ids in encoded])
    results = {"run_dir": FLAGS.run_dir, "folders": folders, "examples": len(encoded), "timings": []}
    for mode in FLAGS.quantize:
        for threads in map(int, FLAGS.threads):
            runs = {}
            for tag, folder in folders.items():
                runner = LiteRTRunner(os.path.join(folder, f"tflite_{mode}"), num_threads=threads)
                teacher = Stage(os.path.join(folder, f"teacher_{mode}.tflite"), threads)
                runs[f"{tag}_chain"] = (runner.classify_ids, ())
                runs[f"{tag}_teacher"] = (lambda ids, teacher=teacher: teacher(**ids), ())
            timed = interleaved(runs, encoded, FLAGS.passes)
            exits = {tag: np.asarray([out["exit_layer"] for out in timed[f"{tag}_chain"]["outputs"]]) for tag in folders}
            row = {"quantize": mode, "threads": threads,
                   "exit_layer_agreement": round(float(np.mean(exits["before"] == exits["after"])), 4)}
            for tag in folders:
                chain, teacher = timed[f"{tag}_chain"]["ms"], timed[f"{tag}_teacher"]["ms"]
                gain = flops_speedup(exits[tag], lengths, spec)
                row[tag] = {"chain_ms": round(min(chain), 3), "teacher_ms": round(min(teacher), 3),
                            "flops_speedup": round(gain, 3), **flops_ratios(teacher, chain, gain)}
            row["chain_after_over_before"] = round(row["after"]["chain_ms"] / row["before"]["chain_ms"], 3)
            row["teacher_after_over_before"] = round(row["after"]["teacher_ms"] / row["before"]["teacher_ms"], 3)
            print(json.dumps(row), flush=True)
            results["timings"].append(row)
    record(results, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
