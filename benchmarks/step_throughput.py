"""Steady-state train-step throughput of both stages at fixed batch shapes.

    python benchmarks/step_throughput.py --lengths=12,20 --steps=20
    python benchmarks/step_throughput.py --cases=teacher,emd --xla=0 --workers=2
    python benchmarks/step_throughput.py --cases=plain,teacher --xla=1 --per_step --steps=30

Prints examples/s for stage 1 (teacher, with/without word-embedding update;
`plain`: the keras-hub backbone's own call plus a Dense layer, the minimal
fine-tuning model, as a reference for the teacher's step) and stage 2
(distillation: KL, EMD with the native Sinkhorn solver, EMD with the exact
POT solver), with and without XLA, on the default MiniLM
backbone. Compilation and the first steps are excluded: this is the rate a
long run settles at, not its wall time. `--workers=N` starts N worker
processes on localhost under `MultiWorkerMirroredStrategy` (the same global
batch, split over them) and prints worker 0's rates.
"""

import os
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from msbert_tf.config import DistillConfig, ModelConfig
from msbert_tf.losses.distill import DistillationLoss
from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier
from msbert_tf.training.stage_models import DistillationModel, TeacherModel
from msbert_tf.training.strategy import make_strategy
from tests.localhost_cluster import localhost_worker_environments  # noqa: E402

flags.DEFINE_list("lengths", ["12", "20"], "Sequence lengths (tokens) to time.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("steps", 20, "Timed steps per repeat.")
flags.DEFINE_integer("repeats", 1, "Timed repeats per setting; the median is printed (shared cores are noisy).")
flags.DEFINE_list("cases", ["teacher", "teacher_frozen_embedding", "kl", "emd", "emd_exact"], "What to time.")
flags.DEFINE_list("xla", ["0", "1"], "XLA settings to time (emd_exact always runs without).")
flags.DEFINE_bool("per_step", False, "Time each step alone (train_on_batch) and print the median step's rate: "
                  "a stalled step on shared cores then moves nothing. One worker only.")
flags.DEFINE_integer("workers", 1, "Worker processes on localhost (MultiWorkerMirroredStrategy when > 1).")
FLAGS = flags.FLAGS

# case -> (stage-2 loss, EMD solver); the rest are stage 1.
DISTILL_CASES = {"kl": ("kl", "sinkhorn"), "emd": ("emd", "sinkhorn"), "emd_exact": ("emd", "exact")}


def make_model(case, classifier):
    if case == "plain":
        backbone = classifier.backbone
        # Earlier cases may have frozen parts of it (stage 2, frozen embeddings).
        backbone.trainable = True
        backbone.token_embedding.trainable = True
        pooled = backbone(backbone.input)["pooled_output"]
        logits = keras.layers.Dense(classifier.num_labels)(keras.layers.Dropout(0.1)(pooled))
        return keras.Model(backbone.input, logits), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if case.startswith("teacher"):
        model = TeacherModel(classifier, train_token_embedding=case == "teacher")
        return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss, solver = DISTILL_CASES[case]
    loss = DistillationLoss(
        DistillConfig(loss=loss, emd_solver=solver), classifier.num_layers,
        classifier.backbone.hidden_dim, head_dim=128,
    )
    return DistillationModel(classifier, loss), None


def step_rate(model, x, batch_size):
    """Examples/s of one `train_on_batch` step."""
    start = time.perf_counter()
    model.train_on_batch(x, np.zeros(batch_size, "int32"))
    return batch_size / (time.perf_counter() - start)


def fit_rate(model, data):
    """Examples/s of `--steps` steps of `fit`."""
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)


def launch_workers(count):
    """Runs this script once per worker with its TF_CONFIG; worker 0 prints."""
    processes = [
        subprocess.Popen([sys.executable, *sys.argv], env=env, stdout=None if i == 0 else subprocess.DEVNULL)
        for i, env in enumerate(localhost_worker_environments(count))
    ]
    codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(f"worker exit codes {codes}")


def main(argv):
    if FLAGS.per_step and FLAGS.workers > 1:
        raise app.UsageError("--per_step times one process's steps: use it with --workers=1.")
    if FLAGS.workers > 1 and "TF_CONFIG" not in os.environ:
        return launch_workers(FLAGS.workers)
    strategy = make_strategy("multi_worker" if FLAGS.workers > 1 else "default")
    with strategy.scope():
        backbone, _ = load_backbone(ModelConfig(), max_seq_length=64)
        classifier = MSBertClassifier(backbone, num_labels=2)
        classifier.build()
    rng = np.random.default_rng(0)
    for case in FLAGS.cases:
        for xla in FLAGS.xla:
            if xla == "1" and (case == "emd_exact" or FLAGS.workers > 1):
                continue  # POT runs in Python, and the multi-worker step: never compiled
            for length in map(int, FLAGS.lengths):
                with strategy.scope():
                    model, loss = make_model(case, classifier)
                    model.compile(optimizer=keras.optimizers.AdamW(1e-5), loss=loss, jit_compile=xla == "1")
                shape = (FLAGS.batch_size, length)
                x = {
                    "token_ids": rng.integers(1000, 20000, shape).astype("int32"),
                    "segment_ids": np.zeros(shape, "int32"),
                    "padding_mask": np.ones(shape, "int32"),
                }
                # A batched dataset, so that several workers split each global batch.
                data = tf.data.Dataset.from_tensor_slices((x, np.zeros(shape[:1], "int32")))
                data = data.repeat().batch(FLAGS.batch_size, drop_remainder=True)
                start = time.perf_counter()
                model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
                warmup = time.perf_counter() - start
                if FLAGS.per_step:
                    step_rate(model, x, shape[0])  # train_on_batch traces once more than fit
                    rates = [step_rate(model, x, shape[0]) for _ in range(FLAGS.steps * FLAGS.repeats)]
                else:
                    rates = [fit_rate(model, data) for _ in range(FLAGS.repeats)]
                rate = float(np.median(rates))
                spread = (f"steps: {min(rates):.1f} to {max(rates):.1f}" if FLAGS.per_step
                          else f"median of {FLAGS.repeats}: {', '.join(f'{r:.1f}' for r in rates)}")
                print(
                    f"{case:26s} xla={xla} workers={FLAGS.workers} length={length:3d}  {rate:7.1f} examples/s"
                    f"  ({spread};"
                    f" compile + 3 steps: {warmup:5.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
