"""How far issue 2's stage-1 throughput target is from this machine's arithmetic.

    python benchmarks/stage1_roofline.py --data_dir=../shared/data/glue --run_dir=/work/runs/sst2_s5

Counts the matrix-product FLOPs of one stage-1 epoch on SST-2 with
`msbert_tf.inference.flops`, at each batch's width as the training pipeline
pads it (length buckets, each batch cut to its longest row) and, as a
floor, at each example's real length. Training counts 3x the forward pass
(the backward pass costs about twice the forward). It then times float32
matrix products of the layer's own shapes (batch x tokens rows, hidden 384,
intermediate 1536) and prints the FLOP rate an epoch in `--target_minutes`
needs against the rate those products reach alone, and against what the
run in `--run_dir` achieved. Embedding look-ups, layer norms, softmax, GELU
and the optimizer's update are left out of the count, so the required
rate is a lower bound.
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from msbert_tf.config import ModelConfig, RunConfig
from msbert_tf.data import pipeline, readers, tasks
from msbert_tf.inference import flops
from msbert_tf.models.backbone import load_backbone

flags.DEFINE_string("data_dir", "../shared/data/glue", "GLUE-layout folder.")
flags.DEFINE_string("task", "sst2", "Task whose training split is counted.")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_integer("max_seq_length", 64, "Tokens per example, as in the run.")
flags.DEFINE_list("bucket_boundaries", ["12", "20", "32"], "Length buckets, as in the run.")
flags.DEFINE_bool("pad_to_bucket_boundary", False, "Pad each batch to its bucket's width, as the XLA path does.")
flags.DEFINE_float("target_minutes", 9.7, "The epoch time to compare against (issue 2: 9.7 minutes).")
flags.DEFINE_string("run_dir", None, "A training run whose stage-1 rate (stages.json) is compared too; its "
                    "config then sets batch size, buckets, padding, length and backbone.")
flags.DEFINE_list("lengths", ["12", "20"], "Token counts per row for the timed matrix products.")
flags.DEFINE_integer("iterations", 50, "Timed products per shape; the median is printed.")
FLAGS = flags.FLAGS

TRAIN_OVER_FORWARD = 3


def pipeline_settings():
    """(batch size, buckets, pad to bucket width, max length, model config): the run's, or the flags'."""
    if FLAGS.run_dir:
        c = RunConfig.from_file(os.path.join(FLAGS.run_dir, "config.json"))
        return c.data.batch_size, list(c.data.bucket_boundaries), c.jit_compile, c.data.max_seq_length, c.model
    return (FLAGS.batch_size, [int(b) for b in FLAGS.bucket_boundaries], FLAGS.pad_to_bucket_boundary,
            FLAGS.max_seq_length, ModelConfig())


def forward_flops_per_example(split, spec, batch_size, buckets, pad_to_bucket_boundary):
    """Mean forward FLOPs per example: (at the pipeline's padded widths, at real lengths, mean padded width)."""
    floor = np.mean([flops.teacher_flops(int(n), spec) for n in split.lengths])
    dataset = pipeline.train_dataset(
        split, batch_size, buckets, seed=0, pad_to_bucket_boundary=pad_to_bucket_boundary,
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
    batch_size, buckets, pad, max_seq_length, model_config = pipeline_settings()
    backbone, preprocessor = load_backbone(model_config, max_seq_length)
    task = tasks.get_task(FLAGS.task)
    spec = {
        "num_layers": backbone.num_layers, "hidden": backbone.hidden_dim,
        "intermediate": backbone.intermediate_dim, "num_labels": task.num_labels,
    }
    examples = readers.read_split(task, "train", FLAGS.data_dir)
    split = pipeline.encode(examples, preprocessor, name="train")
    padded, floor, width = forward_flops_per_example(split, spec, batch_size, buckets, pad)
    rows, target_s = len(split), FLAGS.target_minutes * 60
    # Training FLOPs of one epoch over every row.
    padded_train, floor_train = (TRAIN_OVER_FORWARD * rows * f for f in (padded, floor))
    print(f"{FLAGS.task} train: {rows} rows, mean real length {split.lengths.mean():.2f} tokens, "
          f"mean padded width of the pipeline's batches {width:.2f}")
    print(f"training FLOPs per epoch: {padded_train / 1e12:.2f} TFLOP padded, "
          f"{floor_train / 1e12:.2f} TFLOP at real lengths")
    print(f"needed for {FLAGS.target_minutes} min ({rows / target_s:.1f} examples/s): "
          f"{padded_train / target_s / 1e9:.1f} GFLOP/s padded, {floor_train / target_s / 1e9:.1f} at real lengths")
    if FLAGS.run_dir:
        with open(os.path.join(FLAGS.run_dir, "stages.json")) as f:
            teacher = json.load(f)["teacher"]
        rate = teacher["examples_per_second"]
        print(f"{FLAGS.run_dir}: stage 1 at {rate} examples/s = "
              f"{rate * TRAIN_OVER_FORWARD * padded / 1e9:.1f} GFLOP/s of matrix products")
    h, i = spec["hidden"], spec["intermediate"]
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
