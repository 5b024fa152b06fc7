"""Steady-state train-step throughput of both stages at fixed batch shapes.

    python benchmarks/step_throughput.py --lengths=12,20 --steps=20

Prints examples/s for stage 1 (teacher, with/without word-embedding update)
and stage 2 (distillation, per loss), with and without XLA, on the default
MiniLM backbone. Compilation and the first steps are excluded: this is the
rate a long run settles at, not its wall time.
"""

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

flags.DEFINE_list("lengths", ["12", "20"], "Sequence lengths (tokens) to time.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("steps", 20, "Timed steps per setting.")
flags.DEFINE_list("cases", ["teacher", "teacher_frozen_embedding", "kl", "emd"], "What to time.")
flags.DEFINE_list("xla", ["0", "1"], "XLA settings to time.")
FLAGS = flags.FLAGS


def make_model(case, classifier):
    if case.startswith("teacher"):
        model = TeacherModel(classifier, train_token_embedding=case == "teacher")
        return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss = DistillationLoss(
        DistillConfig(loss=case), classifier.num_layers, classifier.backbone.hidden_dim, head_dim=128
    )
    return DistillationModel(classifier, loss), None


def main(argv):
    backbone, _ = load_backbone(ModelConfig(), max_seq_length=64)
    classifier = MSBertClassifier(backbone, num_labels=2)
    classifier.build()
    rng = np.random.default_rng(0)
    for case in FLAGS.cases:
        for xla in FLAGS.xla:
            for length in map(int, FLAGS.lengths):
                model, loss = make_model(case, classifier)
                model.compile(optimizer=keras.optimizers.AdamW(1e-5), loss=loss, jit_compile=xla == "1")
                shape = (FLAGS.batch_size, length)
                x = {
                    "token_ids": rng.integers(1000, 20000, shape).astype("int32"),
                    "segment_ids": np.zeros(shape, "int32"),
                    "padding_mask": np.ones(shape, "int32"),
                }
                data = tf.data.Dataset.from_tensors((x, np.zeros(shape[:1], "int32"))).repeat()
                start = time.perf_counter()
                model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
                warmup = time.perf_counter() - start
                start = time.perf_counter()
                model.fit(data, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0)
                rate = FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)
                print(
                    f"{case:26s} xla={xla} length={length:3d}  {rate:7.1f} examples/s"
                    f"  (compile + 3 steps: {warmup:5.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    app.run(main)
