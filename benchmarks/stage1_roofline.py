"""How far issue 2's stage-1 throughput target is from this machine's arithmetic.

    python benchmarks/stage1_roofline.py --run_dir=/work/runs/sst2_s5
    python benchmarks/stage1_roofline.py --config=configs/sst2.json --bucket_boundaries=8,12,16 --nojit_compile

Counts the matrix-product FLOPs of one stage-1 epoch with
`msbert_tf.inference.flops`, at each batch's width as the training pipeline
pads it (length buckets; each batch cut to its longest row, or with
`jit_compile` padded to its bucket's width) and, as a floor, at each
example's real length. Training counts 3x the forward pass (the backward
pass costs about twice the forward). It then times float32 matrix products
of the layer's own shapes (batch x tokens rows, hidden and intermediate
widths) and prints the FLOP rate an epoch in `--target_minutes` needs
against the rate those products reach alone, and against what the run in
`--run_dir` achieved. Embedding look-ups, layer norms, softmax, GELU and the
optimizer's update are left out of the count, so the required rate is a
lower bound. Task, data, batch size, buckets, padding, length and backbone
come from the run's config (or `--config`), buckets and padding
overridable.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from msbert_tf.config import RunConfig
from msbert_tf.data import pipeline, readers
from msbert_tf.inference import flops
from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier

flags.DEFINE_string("run_dir", None, "A training run: its config.json sets the pipeline, and its stage-1 rate "
                    "(stages.json) is compared too.")
flags.DEFINE_string("config", "configs/sst2.json", "Without --run_dir: the run preset whose pipeline is counted.")
flags.DEFINE_string("data_dir", None, "GLUE-layout folder, if the config names none.")
flags.DEFINE_list("bucket_boundaries", None, "Override the config's length buckets.")
flags.DEFINE_bool("jit_compile", None, "Override the config's padding: to the bucket's width (XLA) or, with "
                  "--nojit_compile, to the longest row.")
flags.DEFINE_float("target_minutes", 9.7, "The epoch time to compare against (issue 2: 9.7 minutes).")
flags.DEFINE_list("lengths", ["12", "20"], "Token counts per row for the timed matrix products.")
flags.DEFINE_integer("iterations", 50, "Timed products per shape; the median is printed.")
FLAGS = flags.FLAGS

TRAIN_OVER_FORWARD = 3


def run_config():
    path = os.path.join(FLAGS.run_dir, "config.json") if FLAGS.run_dir else FLAGS.config
    config = RunConfig.from_file(path)
    config.data.data_dir = config.data.data_dir or FLAGS.data_dir
    if FLAGS.bucket_boundaries is not None:
        config.data.bucket_boundaries = [int(b) for b in FLAGS.bucket_boundaries]
    if FLAGS.jit_compile is not None:
        config.jit_compile = FLAGS.jit_compile
    return config.validate()


def forward_flops_per_example(split, spec, config):
    """Mean forward FLOPs per example: (at the pipeline's padded widths, at real lengths, mean padded width)."""
    floor = np.mean([flops.teacher_flops(int(n), spec) for n in split.lengths])
    batch_size = config.data.batch_size
    dataset = pipeline.train_dataset(
        split, batch_size, config.data.bucket_boundaries, seed=0, pad_to_bucket_boundary=config.jit_compile,
    ).take(len(split) // batch_size)
    widths = np.array([features["token_ids"].shape[1] for features, _ in dataset])
    padded = np.mean([flops.teacher_flops(int(w), spec) for w in widths])
    return padded, floor, widths.mean()


def _median_seconds(product):
    product()
    times = []
    for _ in range(FLAGS.iterations):
        start = time.perf_counter()
        product()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_gflops(rows, inner, outer):
    """(TensorFlow's rate, NumPy's BLAS rate) for one float32 product, GFLOP/s.

    NumPy's BLAS stands for what this CPU can do on the shape at all.
    """
    a = np.random.rand(rows, inner).astype(np.float32)
    b = np.random.rand(inner, outer).astype(np.float32)
    a_tf, b_tf = tf.constant(a), tf.constant(b)
    tf_product = tf.function(lambda: tf.matmul(a_tf, b_tf))
    flop = 2 * rows * inner * outer
    return (
        flop / _median_seconds(lambda: tf_product().numpy()) / 1e9,
        flop / _median_seconds(lambda: a @ b) / 1e9,
    )


def main(argv):
    del argv
    config = run_config()
    backbone, preprocessor = load_backbone(config.model, config.data.max_seq_length)
    task = readers.resolve_task(config.data)
    spec = flops.model_spec(MSBertClassifier(backbone, num_labels=task.num_labels))
    split = pipeline.encode(readers.read_split(task, "train", config.data.data_dir), preprocessor, name="train")
    padded, floor, width = forward_flops_per_example(split, spec, config)
    rows, target_s = len(split), FLAGS.target_minutes * 60
    # Training FLOPs of one epoch over every row.
    padded_train, floor_train = (TRAIN_OVER_FORWARD * rows * f for f in (padded, floor))
    print(f"{task.name} train: {rows} rows, mean real length {split.lengths.mean():.2f} tokens, "
          f"mean padded width of the pipeline's batches {width:.2f} (buckets {config.data.bucket_boundaries}, "
          f"{'padded to the bucket width' if config.jit_compile else 'cut to the longest row'})")
    print(f"training FLOPs per epoch: {padded_train / 1e12:.2f} TFLOP padded, "
          f"{floor_train / 1e12:.2f} TFLOP at real lengths")
    print(f"needed for {FLAGS.target_minutes} min ({rows / target_s:.1f} examples/s): "
          f"{padded_train / target_s / 1e9:.1f} GFLOP/s padded, {floor_train / target_s / 1e9:.1f} at real lengths")
    if FLAGS.run_dir:
        with open(os.path.join(FLAGS.run_dir, "stages.json")) as f:
            rate = json.load(f)["teacher"]["examples_per_second"]
        print(f"{FLAGS.run_dir}: stage 1 at {rate} examples/s = "
              f"{rate * TRAIN_OVER_FORWARD * padded / 1e9:.1f} GFLOP/s of matrix products")
    h, i, batch_size = spec["hidden"], spec["intermediate"], config.data.batch_size
    print(f"float32 products, GFLOP/s as TensorFlow / NumPy's BLAS "
          f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}):")
    for length in (int(n) for n in FLAGS.lengths):
        tokens = batch_size * length
        rates = [matmul_gflops(tokens, m, n) for m, n in ((h, i), (i, h), (h, h))]
        print(f"  {tokens} rows ({batch_size} x {length} tokens): "
              + ", ".join(f"{tokens}x{m} @ {m}x{n}: {t:.1f} / {b:.1f}"
                          for (m, n), (t, b) in zip(((h, i), (i, h), (h, h)), rates)))


if __name__ == "__main__":
    app.run(main)
