"""Where batch-1 time goes: the fused teacher against parts of the early-exit path.

    python benchmarks/batch1_latency.py --run_dir=RUN [--examples=150]

Each line is the best of 3 passes over the run's first dev examples, one at
a time, milliseconds per example, after one warm-up pass. The XLA lines pad
each example to a multiple of 8 tokens (one compilation per width).
"""

import time

import tensorflow as tf
from absl import app, flags

from msbert_tf.data import pipeline, readers
from msbert_tf.inference.early_exit import EarlyExitPredictor, early_exit
from msbert_tf.inference.uncertainty import ExitRule
from msbert_tf.inference.loading import load_run

flags.DEFINE_string("run_dir", None, "A trained run folder.")
flags.DEFINE_integer("examples", 150, "Dev examples timed, one at a time.")
FLAGS = flags.FLAGS


def main(argv):
    trained = load_run(FLAGS.run_dir)
    c = trained.classifier
    config = trained.run.load_config()
    dev = readers.read_split(trained.task, "dev", config.data.data_dir).take(FLAGS.examples)
    split = pipeline.encode(dev, trained.preprocessor)
    batches = [{k: tf.constant(v.numpy()) for k, v in x.items()} for x, _ in pipeline.eval_dataset(split, 1)]
    tokens = sum(int(x["padding_mask"].numpy().sum()) for x in batches) / len(batches)
    print(f"{trained.task.name}: {len(batches)} examples, {tokens:.1f} tokens on average")

    def first_layer(x):
        return c.transformer_layer(0, c.embed(x), x["padding_mask"])

    def compiled(fn):
        return tf.function(fn, reduce_retracing=True)

    parts = {
        "empty call (the three input tensors in, one number out)": compiled(lambda x: x["token_ids"][0, 0]),
        "fused teacher (all layers)": compiled(lambda x: c.teacher_logits(c.hidden_states(x)[-1], x["padding_mask"])),
        "embeddings": compiled(c.embed),
        "embeddings + layer 1": compiled(first_layer),
        "embeddings + layer 1 + exit head 1": compiled(
            lambda x: c.exit_outputs(0, first_layer(x), x["padding_mask"])[1]
        ),
        "early exit, speed 1 (always exit 1)": compiled(
            lambda x: early_exit(c, x, "entropy", tf.constant(1.0, tf.float64))
        ),
        "early exit, speed 0 (every layer and head)": compiled(
            lambda x: early_exit(c, x, "entropy", tf.constant(0.0, tf.float64))
        ),
    }
    predictor = EarlyExitPredictor(c)
    as_numpy = [{k: v.numpy() for k, v in x.items()} for x in batches]
    widths = range(8, split.features["token_ids"].shape[1] + 8, 8)
    as_padded = [{k: tf.constant(v.numpy()) for k, v in x.items()}
                 for x, _ in pipeline.eval_dataset(split, 1, widths=widths)]
    xla = {
        name: tf.function(parts[name].python_function, jit_compile=True)
        for name in ("fused teacher (all layers)", "embeddings + layer 1 + exit head 1")
    }
    cases = [(name, fn, batches) for name, fn in parts.items()] + [
        (f"{name}, XLA, padded to a multiple of 8", fn, as_padded) for name, fn in xla.items()
    ] + [
        # What `evaluate`'s wall clock times: numpy in, numpy out, both sides.
        ("fused teacher, numpy inputs (the wall clock's baseline)", parts["fused teacher (all layers)"], as_numpy),
        ("EarlyExitPredictor.predict, speed 1, numpy inputs",
         lambda x: predictor.predict(x, ExitRule("entropy", 1.0)), as_numpy),
        ("EarlyExitPredictor.predict, speed 0, numpy inputs",
         lambda x: predictor.predict(x, ExitRule("entropy", 0.0)), as_numpy),
    ]
    for name, fn, inputs in cases:
        for x in inputs:  # every width compiled before the clock starts
            fn(x)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for x in inputs:
                tf.nest.map_structure(lambda y: y.numpy() if hasattr(y, "numpy") else y, fn(x))
            best = min(best, time.perf_counter() - start)
        print(f"{name}: {best / len(inputs) * 1e3:.2f} ms")


if __name__ == "__main__":
    flags.mark_flag_as_required("run_dir")
    app.run(main)
