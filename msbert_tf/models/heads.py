"""Exit heads: a small classifier after a transformer layer.

Each head maps the layer's sequence output `h` (B x T x H) and padding mask
to its internal vector `z` (B x d) and logits `s` (B x N).

```python
import numpy as np
head = AttentionExitHead(num_labels=2, hidden_dim=8, num_heads=2)
z, logits = head(np.zeros((1, 5, 16), "float32"), np.ones((1, 5), "int32"))
```
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="msbert_tf")
class MLPExitHead(keras.layers.Layer):
    """dense(d, tanh) on the [CLS] row, then dense(num_labels). The cheapest head."""

    def __init__(self, num_labels, hidden_dim=128, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.hidden_dense = keras.layers.Dense(hidden_dim, activation="tanh", name="hidden_dense")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        self.logits_dense = keras.layers.Dense(num_labels, name="logits_dense")

    def build(self, hidden_shape, padding_mask_shape=None):
        self.hidden_dense.build((hidden_shape[0], hidden_shape[-1]))
        self.logits_dense.build((hidden_shape[0], self.hidden_dim))
        self.built = True

    def call(self, hidden, padding_mask, training=False):
        z = self.hidden_dense(hidden[:, 0, :])
        return z, self.logits_dense(self.dropout_layer(z, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, hidden_dim=self.hidden_dim, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="msbert_tf")
class AttentionExitHead(keras.layers.Layer):
    """FastBERT's student: project to d, masked attention, [CLS], dense(d, tanh), dense.

    Only the [CLS] row is read afterwards, so it alone is the attention's
    query; the keys and values are every (unpadded) token. That equals full
    self-attention followed by taking [CLS], at 1/T of the query cost.
    """

    def __init__(self, num_labels, hidden_dim=128, num_heads=2, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.project = keras.layers.Dense(hidden_dim, name="project")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=hidden_dim // num_heads, name="attention"
        )
        self.hidden_dense = keras.layers.Dense(hidden_dim, activation="tanh", name="hidden_dense")
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        self.logits_dense = keras.layers.Dense(num_labels, name="logits_dense")

    def build(self, hidden_shape, padding_mask_shape=None):
        batch, length = hidden_shape[0], hidden_shape[1]
        self.project.build(hidden_shape)
        projected = (batch, length, self.hidden_dim)
        self.attention.build((batch, 1, self.hidden_dim), projected, projected)
        self.hidden_dense.build((batch, self.hidden_dim))
        self.logits_dense.build((batch, self.hidden_dim))
        self.built = True

    def call(self, hidden, padding_mask, training=False):
        x = self.project(hidden)
        mask = ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)  # B x 1 x T
        attended = self.attention(x[:, :1, :], x, attention_mask=mask, training=training)
        z = self.hidden_dense(attended[:, 0, :])
        return z, self.logits_dense(self.dropout_layer(z, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_labels=self.num_labels,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
        )
        return config


def make_head(kind, num_labels, hidden_dim, num_heads, dropout, name):
    if kind == "mlp":
        return MLPExitHead(num_labels, hidden_dim=hidden_dim, dropout=dropout, name=name)
    return AttentionExitHead(
        num_labels, hidden_dim=hidden_dim, num_heads=num_heads, dropout=dropout, name=name
    )
