"""The MS-BERT task: a BERT backbone, its teacher classifier, and exit heads.

Layer `l`'s exit is head `l` for `l < L` and the teacher for `l = L`. The
model exposes each step (embed, one transformer layer, one exit) so that
training, early-exit inference and per-stage export all run the same code.

```python
import numpy as np
from msbert_tf.config import ModelConfig
from msbert_tf.models.backbone import load_backbone
backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), 16)
model = MSBertClassifier(backbone, num_labels=2, head="mlp", head_dim=8)
logits = model(preprocessor(["good", "bad"]))  # B x L x num_labels
```
"""

import keras
from keras import ops

from msbert_tf.models import rows
from msbert_tf.models.backbone import use_exact_gelu, uses_exact_gelu
from msbert_tf.models.heads import make_head


@keras.saving.register_keras_serializable(package="msbert_tf")
class MSBertClassifier(keras.Model):
    def __init__(
        self,
        backbone,
        num_labels,
        head="attention",
        head_dim=128,
        head_num_heads=2,
        head_depth=1,
        dropout=0.1,
        teacher_pooling="cls",
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Layers ===
        self.backbone = backbone
        self.teacher_dropout = keras.layers.Dropout(dropout, name="teacher_dropout")
        self.teacher_dense = keras.layers.Dense(num_labels, name="teacher_dense")
        self.exit_heads = [
            make_head(head, num_labels, head_dim, head_num_heads, dropout, name=f"exit_head_{i}", depth=head_depth)
            for i in range(backbone.num_layers - 1)
        ]
        # === Config ===
        self.num_labels = num_labels
        self.head = head
        self.head_dim = head_dim
        self.head_num_heads = head_num_heads
        self.head_depth = head_depth
        self.dropout = dropout
        self.teacher_pooling = teacher_pooling

    @property
    def num_layers(self):
        return self.backbone.num_layers

    def build(self, input_shape=None):
        hidden = (None, None, self.backbone.hidden_dim)
        for head in self.exit_heads:
            head.build(hidden)
        self.teacher_dense.build((None, self.backbone.hidden_dim))
        self.built = True

    def reset_exit_heads(self):
        """Draws the exit heads' weights anew from Keras' global seed."""
        for head in self.exit_heads:
            fresh = make_head(
                self.head, self.num_labels, self.head_dim, self.head_num_heads, self.dropout,
                name=head.name, depth=self.head_depth,
            )
            fresh.build((None, None, self.backbone.hidden_dim))
            for mine, drawn in zip(head.weights, fresh.weights, strict=True):
                mine.assign(drawn)

    def embed(self, inputs, training=False):
        """Embeddings of `inputs` (the backbone's own layers, as it runs them)."""
        b = self.backbone
        tokens = b.token_embedding(inputs["token_ids"])
        x = b.embeddings_add(
            (tokens, b.position_embedding(tokens), b.segment_embedding(inputs["segment_ids"]))
        )
        return b.embeddings_dropout(b.embeddings_layer_norm(x), training=training)

    def transformer_layer(self, index, hidden, padding_mask, training=False):
        """Runs transformer layer `index` (0-based) on the previous hidden state."""
        layer = self.backbone.transformer_layers[index]
        return layer(hidden, padding_mask=padding_mask, training=training)

    def hidden_states(self, inputs, training=False):
        """The sequence output of every layer, each layer run once."""
        x = self.embed(inputs, training=training)
        states = []
        for index in range(self.num_layers):
            x = self.transformer_layer(index, x, inputs["padding_mask"], training=training)
            states.append(x)
        return states

    def teacher_logits(self, hidden, padding_mask, training=False):
        """The teacher classifier C_T (pooler, dropout, dense) read at any layer.

        `teacher_pooling="mean"` feeds the pooler the mean of the unpadded
        rows instead of [CLS]: sentence-embedding checkpoints such as
        all-MiniLM-L6-v2 were trained to carry the sentence in that mean, and
        ship an untrained pooler (zero bias) that [CLS] alone has to rescue.
        """
        if self.teacher_pooling == "mean":
            mask = ops.cast(padding_mask, hidden.dtype)
            summary = rows.weighted_sum(mask, hidden) / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
        else:
            summary = rows.first_token(hidden)
        pooled = self.backbone.pooled_dense(summary)
        return self.teacher_dense(self.teacher_dropout(pooled, training=training))

    def exit_outputs(self, index, hidden, padding_mask, training=False):
        """`(z, logits)` of exit `index`; the last exit is the teacher (z = None)."""
        if index == self.num_layers - 1:
            return None, self.teacher_logits(hidden, padding_mask, training=training)
        return self.exit_heads[index](hidden, padding_mask, training=training)

    def call(self, inputs, training=False):
        """Logits of every exit, stacked: B x L x num_labels."""
        states = self.hidden_states(inputs, training=training)
        return ops.stack(
            [
                self.exit_outputs(i, h, inputs["padding_mask"], training=training)[1]
                for i, h in enumerate(states)
            ],
            axis=1,
        )

    def set_stage(self, stage):
        """`teacher`: backbone and C_T train; `distill`: only the exit heads do."""
        teacher_trains = stage == "teacher"
        self.backbone.trainable = teacher_trains
        self.teacher_dense.trainable = teacher_trains
        for head in self.exit_heads:
            head.trainable = not teacher_trains

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            num_labels=self.num_labels,
            head=self.head,
            head_dim=self.head_dim,
            head_num_heads=self.head_num_heads,
            head_depth=self.head_depth,
            dropout=self.dropout,
            teacher_pooling=self.teacher_pooling,
            exact_gelu=uses_exact_gelu(self.backbone),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if config.pop("exact_gelu", False):
            use_exact_gelu(config["backbone"])
        return cls(**config)
