"""Full-integer int8 for one stage of the chain, against dynamic int8 and float32 (issue 22's pilot).

    python benchmarks/full_int8_stage.py --run_dir=runs/sst2 --dev_file=../shared/data/glue/SST-2/dev.tsv \
        [--stage=2] [--output=int8.json]

Stage `--stage` (a middle one: it takes the hidden state, as most stages
do) is converted four ways: float32, dynamic int8 (int8 weights, the
product's `--quantize=dynamic`), full int8 (weights and activations,
calibrated on a representative set of real inputs: the stage before it run
on dev sentences), and full int8 with the ops whose quantization error is
largest (LayerNorm's variance, attention's matrix products) left in float
through the quantization debugger's denylist. For each, on other dev
sentences at their own lengths: the exit's probabilities against float32's
(median and largest difference), label agreement, and milliseconds per
invoke at batch 1, one thread, all timed in one run side by side.

The calibrator cannot resize its inputs between samples (shapes from two
samples meet in one broadcast), so the representative set is every
calibration sentence of at least `--calibration_length` tokens cut to that
length.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import record  # noqa: E402

from msbert_tf.data import pipeline, readers  # noqa: E402
from msbert_tf.export import litert, stages  # noqa: E402
from msbert_tf.export.runner import Stage  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402

flags.DEFINE_string("run_dir", None, "A finished classification run.")
flags.DEFINE_string("dev_file", None, "Labelled rows of the task: every 8th calibrates, every 4th (offset 1) is read.")
flags.DEFINE_integer("stage", 2, "The stage (1-based, not the first) to convert.")
flags.DEFINE_integer("calibration_length", 16, "Tokens every representative sample is cut to.")
flags.DEFINE_list("denylist", ["SQUARED_DIFFERENCE", "BATCH_MATMUL"], "Ops the last variant keeps in float.")
flags.DEFINE_string("output", None, "Where to write the numbers (JSON).")
FLAGS = flags.FLAGS


def stage_inputs(trained, split, rows, index):
    """The real inputs of stage `index` (0-based) for `rows` of `split`, each at its own length."""
    before = [stages.stage_model(trained.classifier, i) for i in range(index)]
    for i in rows:
        n = int(split.lengths[i])
        feed = {k: np.asarray(v[i:i + 1, :n], np.int32) for k, v in split.features.items()}
        mask = feed["padding_mask"]
        for model in before:
            feed = {"hidden_in": np.asarray(model(feed)["hidden"], np.float32), "padding_mask": mask}
        yield feed


def convert(model, mode, samples):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode == "none":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "dynamic":
        return converter.convert()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.representative_dataset = lambda: iter(samples)
    if mode == "int8":
        return converter.convert()
    # The debugger takes each sample as a list in the graph's input order.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([s["hidden_in"], s["padding_mask"]] for s in samples),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLAGS.denylist),
    )
    return debugger.get_nondebug_quantized_model()


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    if trained.task.regression:
        raise SystemExit("a classification run, please: the pilot compares class probabilities.")
    dev = readers.read_file(trained.task, FLAGS.dev_file)
    split = pipeline.encode(dev, trained.preprocessor)
    index = FLAGS.stage - 1
    width = FLAGS.calibration_length
    samples = [{k: v[:, :width] for k, v in s.items()}
               for s in stage_inputs(trained, split, range(0, len(dev), 8), index) if s["hidden_in"].shape[1] >= width]
    test = list(stage_inputs(trained, split, range(1, len(dev), 4), index))
    model = stages.stage_model(trained.classifier, index)
    out = {"run_dir": FLAGS.run_dir, "stage": FLAGS.stage, "representative_samples": len(samples),
           "calibration_length": width, "test_sentences": len(test), "denylist": FLAGS.denylist, "modes": {}}
    folder = tempfile.mkdtemp()
    runners = {}
    for mode in ("none", "dynamic", "int8", "int8_denylist"):
        path = os.path.join(folder, f"{mode}.tflite")
        with open(path, "wb") as f:
            f.write(convert(model, mode, samples))
        runners[mode] = Stage(path, num_threads=1)
        out["modes"][mode] = {"size_mb": round(os.path.getsize(path) / 1e6, 2)}
    name = "probabilities"
    reference = [runners["none"](**s)[name][0] for s in test]
    for mode, stage in runners.items():
        got = [stage(**s)[name][0] for s in test]
        diff = [float(np.abs(g - r).max()) for g, r in zip(got, reference)]
        times = []
        for _ in range(3):  # best of three passes over the sentences
            start = time.perf_counter()
            for s in test:
                stage(**s)
            times.append((time.perf_counter() - start) / len(test))
        out["modes"][mode].update(
            prob_diff_median=round(float(np.median(diff)), 5), prob_diff_max=round(max(diff), 4),
            label_agreement=round(float(np.mean([g.argmax() == r.argmax() for g, r in zip(got, reference)])), 4),
            ms=round(1000 * min(times), 3),
        )
        print(mode, json.dumps(out["modes"][mode]), flush=True)
    record(out, FLAGS.output)


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file"])
    app.run(main)
