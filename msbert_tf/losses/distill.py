"""Self-distillation objectives for the exit heads (stage 2).

`loss = alpha * sum_l KL(p_T || p_l) + beta * EMD(students, teacher layers)`
for `emd` (MS-BERT); `alpha * sum_l KL` alone for `kl` (FastBERT); the sum
of every head's cross-entropy on gold labels for `ce` (DeeBERT-style).
For regression (one output) squared error takes the place of KL and of
cross-entropy: to the teacher's value, between layers in the EMD's
`logits` cost, and to the gold score for `ce`. The part keeps the name
`kl` in the logs.

With `disagreement_penalty` gamma > 0 (classification only), every loss adds
`gamma * sum_l mean_b [argmax p_l != argmax p_T] * KL(u || p_l)`, u the
uniform distribution: an exit is pushed toward uncertainty on the rows
where its label is not the teacher's, so that an exit rule reading its
confidence leaves on agreement (logged as `penalty`).

The layer takes the stage-2 model's outputs (a dict, see
`msbert_tf.training.stage_models.DistillationModel`) and the labels, and
returns the total with its parts, for logging.

```python
import numpy as np
from msbert_tf.config import DistillConfig
loss = DistillationLoss(DistillConfig(loss="kl"), num_layers=3, hidden_dim=16, head_dim=8)
outputs = {
    "student_logits": np.zeros((2, 4, 2), "float32"),
    "student_z": np.zeros((2, 4, 8), "float32"),
    "teacher_logits": np.zeros((3, 4, 2), "float32"),
    "teacher_cls": np.zeros((3, 4, 16), "float32"),
}
loss(outputs, np.zeros((4,), "int32"))["loss"]  # 0.0: students equal the teacher
```
"""

import dataclasses

import keras
import tensorflow as tf

from msbert_tf.config import DistillConfig
from msbert_tf.losses.emd import transport_loss


def _kl(p_teacher, log_p_student):
    """KL(p_T || p_S) per example, summed over classes (broadcasts leading axes)."""
    log_p_teacher = tf.math.log(tf.maximum(p_teacher, 1e-12))
    return tf.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)


@keras.saving.register_keras_serializable(package="msbert_tf")
class DistillationLoss(keras.layers.Layer):
    """Stage-2 objective; owns the EMD's learned parts (projections, layer weights)."""

    def __init__(self, config, num_layers, hidden_dim, head_dim=128, regression=False, **kwargs):
        super().__init__(**kwargs)
        if regression and config.disagreement_penalty:
            raise ValueError("disagreement_penalty needs labels to disagree on; a regression has none.")
        self.config = config
        self.regression = regression
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim
        self.head_dim = head_dim
        num_students = num_layers - 1
        uses_hidden = config.loss == "emd" and config.emd_cost in ("hidden", "both")
        # W_i: maps student i's z to the teacher's hidden size for the `hidden` cost.
        self.projections = (
            [keras.layers.Dense(hidden_dim, name=f"projection_{i}") for i in range(num_students)]
            if uses_hidden
            else []
        )
        # Pile masses; updated by cost attention when `layer_weights=learned`.
        self.student_mass = self.add_weight(
            shape=(num_students,), initializer=keras.initializers.Constant(1 / num_students),
            trainable=False, name="student_mass", aggregation="mean",
        )
        self.teacher_mass = self.add_weight(
            shape=(num_layers,), initializer=keras.initializers.Constant(1 / num_layers),
            trainable=False, name="teacher_mass", aggregation="mean",
        )

        for projection in self.projections:
            projection.build((None, head_dim))

    def call(self, outputs, labels, training=False):
        c = self.config
        parts = self._loss_parts(outputs, labels, training)
        if c.disagreement_penalty:
            parts["penalty"] = self._disagreement(outputs)
            parts["loss"] = parts["loss"] + c.disagreement_penalty * parts["penalty"]
        return parts

    def _loss_parts(self, outputs, labels, training):
        c = self.config
        if c.loss == "ce":
            ce = self._gold_loss(outputs["student_logits"], labels)
            return {"loss": ce, "ce": ce}
        terms = self._regression_terms if self.regression else self._kl_terms
        to_teacher, pair_cost = terms(outputs)
        parts, total = {"kl": to_teacher}, c.alpha * to_teacher
        if c.loss == "emd":
            # Only a `logits` cost needs the S x L pairwise divergences.
            logits_cost = pair_cost() if c.emd_cost in ("logits", "both") else None
            parts["emd"] = self._emd(outputs, logits_cost, training)
            total = total + c.beta * parts["emd"]
        return {"loss": total, **parts}

    def _disagreement(self, outputs):
        """sum_l mean_b [argmax p_l != argmax p_T] * KL(u || p_l), at temperature 1 (the exit rules' own)."""
        student_logits = outputs["student_logits"]
        teacher_label = tf.argmax(outputs["teacher_logits"][-1], axis=-1)
        disagrees = tf.cast(tf.not_equal(tf.argmax(student_logits, axis=-1), teacher_label[None]), student_logits.dtype)
        # KL(u || p) = -log C - mean_c log p_c.
        log_p = tf.nn.log_softmax(student_logits, axis=-1)
        num_classes = tf.cast(tf.shape(student_logits)[-1], student_logits.dtype)
        to_uniform = -tf.math.log(num_classes) - tf.reduce_mean(log_p, axis=-1)
        return tf.reduce_sum(tf.reduce_mean(disagrees * to_uniform, axis=1))

    def _gold_loss(self, student_logits, labels):
        """Every head's loss on the gold labels, summed: cross-entropy, or squared error."""
        if self.regression:
            gold = tf.cast(labels, student_logits.dtype)[None]
            return tf.reduce_sum(tf.reduce_mean(tf.square(student_logits[..., 0] - gold), axis=1))
        gold = tf.broadcast_to(tf.cast(labels, tf.int32)[None], tf.shape(student_logits)[:2])
        return tf.reduce_sum(
            tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(gold, student_logits), axis=1)
        )

    def _kl_terms(self, outputs):
        """sum_l KL(p_T || p_l), and d_ij = KL(softmax(C_T(h_j)/tau) || p_i) (S x L, batch mean)."""
        tau = self.config.temperature
        log_p_students = tf.nn.log_softmax(outputs["student_logits"] / tau, axis=-1)
        p_teacher_layers = tf.stop_gradient(tf.nn.softmax(outputs["teacher_logits"] / tau, axis=-1))
        kl = tf.reduce_sum(tf.reduce_mean(_kl(p_teacher_layers[-1][None], log_p_students), axis=1))
        return kl, lambda: tf.reduce_mean(_kl(p_teacher_layers[None], log_p_students[:, None]), axis=-1)

    def _regression_terms(self, outputs):
        """The same with squared error: to C_T's value, and between head i's and layer j's values."""
        students = outputs["student_logits"][..., 0]  # S x B
        teachers = tf.stop_gradient(outputs["teacher_logits"][..., 0])  # L x B
        se = tf.reduce_sum(tf.reduce_mean(tf.square(students - teachers[-1][None]), axis=1))
        return se, lambda: tf.reduce_mean(tf.square(students[:, None] - teachers[None]), axis=-1)

    def _emd(self, outputs, logits_cost, training):
        c = self.config
        costs = []
        if c.emd_cost in ("logits", "both"):
            costs.append(logits_cost)
        if c.emd_cost in ("hidden", "both"):
            projected = tf.stack(
                [w(z) for w, z in zip(self.projections, tf.unstack(outputs["student_z"]))]
            )  # S x B x H
            teacher_cls = tf.stop_gradient(outputs["teacher_cls"])  # L x B x H
            costs.append(
                tf.reduce_mean(
                    tf.square(projected[:, None] - teacher_cls[None]), axis=(-1, -2)
                )
            )
        cost = tf.add_n(costs)
        loss, plan = transport_loss(
            cost, self.student_mass, self.teacher_mass, solver=c.emd_solver,
            epsilon=c.sinkhorn_epsilon, iterations=c.sinkhorn_iterations,
        )
        if c.layer_weights == "learned" and training:
            self._update_masses(tf.stop_gradient(cost), plan)
        return loss

    def _update_masses(self, cost, plan):
        """BERT-EMD's cost attention: piles that transport cheaply gain mass.

        Each pile's cost per unit of mass, `sum F C / w`, is inverted and
        normalised to sum to 1 before the temperature softmax, so the update
        does not depend on the scale of the costs (raw inverses of small KL
        costs would put all mass on one pile).
        """
        moved = plan * cost
        t = self.config.layer_weight_temperature
        for mass, axis in ((self.student_mass, 1), (self.teacher_mass, 0)):
            unit_cost = tf.reduce_sum(moved, axis=axis) / tf.maximum(mass, 1e-12)
            inverse = 1.0 / tf.maximum(unit_cost, 1e-12)
            mass.assign(tf.nn.softmax(inverse / tf.reduce_sum(inverse) / t))

    def get_config(self):
        config = super().get_config()
        config.update(
            config=dataclasses.asdict(self.config),
            num_layers=self.num_layers,
            hidden_dim=self.hidden_dim,
            head_dim=self.head_dim,
            regression=self.regression,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["config"] = DistillConfig(**config["config"])
        return cls(**config)
