"""Which ops `--quantize=int8` leaves in float, measured on the chain (issue 22).

    python benchmarks/int8_variants.py --run_dir=runs/sst2 --dev_file=../shared/data/glue/SST-2/dev.tsv \
        [--output=int8_variants.json]

Every stage of the run converted with int8 activations four ways, each
calibrated on the product's rows (`int8.training_sample`, 200 rows cut to
32 tokens): every op in int8; attention's activation products, softmax and
LayerNorm in float; the product's choice (`int8.FLOAT_OPS`: only the fully
connected layers and the embedding lookups in int8); and the product's
choice calibrated on the same rows padded to 32 tokens instead of cut. For
each, the chain on every dev sentence at the run's rule and threshold, one
sentence at a time: accuracy, exit layers and labels equal to the float32
chain's, mean stages, size.
"""

import json
import os
import sys
import tempfile

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import record  # noqa: E402

from msbert_tf.data import pipeline, readers  # noqa: E402
from msbert_tf.export import int8, stages  # noqa: E402
from msbert_tf.export.bundle import export_run  # noqa: E402
from msbert_tf.export.runner import LiteRTRunner, Stage  # noqa: E402
from msbert_tf.inference.loading import load_run  # noqa: E402
from msbert_tf.inference.predict import default_rule  # noqa: E402

flags.DEFINE_string("run_dir", None, "A finished classification run.")
flags.DEFINE_string("dev_file", None, "Labelled rows to read the chains on.")
flags.DEFINE_string("output", None, "Where to write the numbers (JSON).")
FLAGS = flags.FLAGS

VARIANTS = {
    "every op int8": (),
    "attention products, softmax, LayerNorm in float": ("BATCH_MATMUL", "SOFTMAX", "SQUARED_DIFFERENCE", "MEAN", "RSQRT"),
    "the product (int8.FLOAT_OPS)": int8.FLOAT_OPS,
    "the product, calibrated on padded rows": int8.FLOAT_OPS,
}


def padded_samples(rows, preprocessor, count, length):
    """The first `count` of `rows` as they come, padded (or cut) to `length` tokens."""
    split = pipeline.encode(rows.take(count), preprocessor)
    return [{k: np.ascontiguousarray(v[i : i + 1, :length]) for k, v in split.features.items()} for i in range(count)]


def main(argv):
    del argv
    trained = load_run(FLAGS.run_dir)
    rule = default_rule(trained)
    dev = readers.read_file(trained.task, FLAGS.dev_file)
    models = stages.stage_models(trained.classifier)
    rows = int8.training_sample(trained)
    cut = int8.id_samples(rows, trained.preprocessor)
    pad = padded_samples(rows, trained.preprocessor, len(cut), int8.SAMPLE_LENGTH)
    folder = tempfile.mkdtemp()
    # The float32 bundle: its graphs, and its runner's loop for every variant's graphs.
    runner = LiteRTRunner(export_run(trained, folder, formats=("tflite",), rule=rule)[0])
    examples = [runner.encode(text) for text in dev.text_a]
    paths = {"float32": [stage.path for stage in runner.stages]}
    for v, (name, float_ops) in enumerate(VARIANTS.items()):
        per_stage = int8.stage_samples(trained.classifier, pad if "padded" in name else cut)
        paths[name] = [int8.write_int8(m, os.path.join(folder, f"v{v}_{i}.tflite"), s, float_ops)
                       for i, (m, s) in enumerate(zip(models, per_stage))]
    results = {}
    for name, files in paths.items():
        # Every variant decides at the float model's threshold.
        runner.stages = [Stage(f) for f in files]
        results[name] = [(out["exit_layer"], out["label_id"]) for out in map(runner.classify_ids, examples)]
    reference = results["float32"]
    out = {"run_dir": FLAGS.run_dir, "rule": rule.kind, "threshold": rule.threshold, "sentences": len(dev),
           "calibration_rows": len(cut), "calibration_length": int(cut[0]["token_ids"].shape[1]), "variants": {}}
    for name, got in results.items():
        out["variants"][name] = {
            "accuracy": round(100 * float(np.mean([p == y for (_, p), y in zip(got, dev.labels)])), 2),
            "exit_agreement": round(float(np.mean([a[0] == b[0] for a, b in zip(got, reference)])), 4),
            "label_agreement": round(float(np.mean([a[1] == b[1] for a, b in zip(got, reference)])), 4),
            "mean_stages": round(float(np.mean([e for e, _ in got])), 3),
            "size_mb": round(sum(os.path.getsize(f) for f in paths[name]) / 2**20, 2),
        }
        print(name, json.dumps(out["variants"][name]), flush=True)
    record(out, FLAGS.output)


if __name__ == "__main__":
    flags.mark_flags_as_required(["run_dir", "dev_file"])
    app.run(main)
