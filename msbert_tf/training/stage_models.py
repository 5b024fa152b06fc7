"""The trainable view of the classifier in each stage, for `keras.Model.fit`.

Stage 1 (`TeacherModel`) fine-tunes backbone + teacher classifier with
cross-entropy. Stage 2 (`DistillationModel`) runs the frozen backbone
forward only (no dropout, no backward pass) and trains the exit heads with
`DistillationLoss`. Both use Keras' own `train_step`, so progress bars,
callbacks, checkpoints and distribution strategies work unchanged.
"""

import keras
import tensorflow as tf

from msbert_tf.training.strategy import is_multi_worker


class _StageModel(keras.Model):
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 builds from a peeked batch that it `reduce`s across replicas;
        # MultiWorkerMirroredStrategy cannot reduce a dict of features
        # (keras-team/keras#20329), so `fit` failed before its first step. Any
        # one replica's batch has the shapes and dtypes the build needs.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                local = self._distribute_strategy.experimental_local_results
                data_batch = tf.nest.map_structure(
                    lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    next(batches),
                )
                break
        super()._maybe_symbolic_build(data_batch=data_batch)

    def make_train_function(self, force=False):
        strategy = self.distribute_strategy
        if not is_multi_worker(strategy):
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function

        # Keras reduces the step's logs with `reduce(MEAN, v, axis=0)` under
        # MultiWorkerMirroredStrategy, which fails on scalar metrics; this is
        # its step with the reduction over replicas only. No XLA here: the
        # cross-worker all-reduce runs outside a compiled cluster.
        @tf.function(reduce_retracing=True)
        def step(batch):
            logs = strategy.run(self.train_step, args=(batch,))
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), logs)

        self.train_function = lambda iterator: step(next(iterator))
        return self.train_function


class TeacherModel(_StageModel):
    def __init__(self, classifier, train_token_embedding=True, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        classifier.set_stage("teacher")
        classifier.backbone.token_embedding.trainable = train_token_embedding

    def call(self, inputs, training=False):
        last = self.classifier.hidden_states(inputs, training=training)[-1]
        return self.classifier.teacher_logits(last, inputs["padding_mask"], training=training)


class DistillationModel(_StageModel):
    def __init__(self, classifier, distill_loss, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.distill_loss = distill_loss
        classifier.set_stage("distill")
        parts = {"ce": ("ce",), "kl": ("kl",), "emd": ("kl", "emd")}[distill_loss.config.loss]
        if distill_loss.config.disagreement_penalty:
            parts += ("penalty",)
        self.part_trackers = {name: keras.metrics.Mean(name=name) for name in parts}

    def build(self, input_shape=None):
        # The classifier and the loss build their own variables up front.
        self.built = True

    def call(self, inputs, training=False):
        c = self.classifier
        # The backbone and C_T are frozen: inference mode, and no gradient.
        states = [tf.stop_gradient(h) for h in c.hidden_states(inputs, training=False)]
        mask = inputs["padding_mask"]
        z, logits = zip(
            *(c.exit_heads[i](states[i], mask, training=training) for i in range(c.num_layers - 1))
        )
        return {
            "student_logits": tf.stack(logits),
            "student_z": tf.stack(z),
            "teacher_logits": tf.stop_gradient(
                tf.stack([c.teacher_logits(h, mask, training=False) for h in states])
            ),
            "teacher_cls": tf.stack([h[:, 0, :] for h in states]),
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        parts = self.distill_loss(y_pred, y, training=training)
        for name, value in parts.items():
            if name in self.part_trackers:
                self.part_trackers[name].update_state(value)
        # Replicas' gradients are summed: like Keras' compiled losses, divide
        # by their number so that the step equals one device's on the batch.
        return parts["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
