"""Exit heads: a small classifier after a transformer layer.

Each head maps the layer's sequence output `h` (B x T x H) and padding mask
to its internal vector `z` (B x d) and logits `s` (B x N).

```python
import numpy as np
head = AttentionExitHead(num_labels=2, hidden_dim=8, num_heads=2)
z, logits = head(np.zeros((1, 5, 16), "float32"), np.ones((1, 5), "int32"))
```
"""

import math

import keras
import keras_hub
from keras import ops

from msbert_tf.config import BLOCK_FEED_FORWARD_RATIO
from msbert_tf.models import rows


@keras.saving.register_keras_serializable(package="msbert_tf")
class MLPExitHead(keras.layers.Layer):
    """`depth` x dense(d, tanh) on the [CLS] row, then dense(num_labels). The cheapest head."""

    def __init__(self, num_labels, hidden_dim=128, dropout=0.1, depth=1, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.depth = depth
        self.hidden_dense = keras.layers.Dense(hidden_dim, activation="tanh", name="hidden_dense")
        # Kept apart from `hidden_dense`, so weight files of depth-1 heads
        # (saved by attribute path) still load.
        self.deeper_denses = [
            keras.layers.Dense(hidden_dim, activation="tanh", name=f"hidden_dense_{i}")
            for i in range(1, depth)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout, name="dropout")
        self.logits_dense = keras.layers.Dense(num_labels, name="logits_dense")

    def build(self, hidden_shape, padding_mask_shape=None):
        self.hidden_dense.build((hidden_shape[0], hidden_shape[-1]))
        for dense in self.deeper_denses:
            dense.build((hidden_shape[0], self.hidden_dim))
        self.logits_dense.build((hidden_shape[0], self.hidden_dim))
        self.built = True

    def call(self, hidden, padding_mask, training=False):
        z = self.hidden_dense(hidden[:, 0, :])
        for dense in self.deeper_denses:
            z = dense(z)
        return z, self.logits_dense(self.dropout_layer(z, training=training))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_labels=self.num_labels, hidden_dim=self.hidden_dim, dropout=self.dropout, depth=self.depth
        )
        return config


@keras.saving.register_keras_serializable(package="msbert_tf")
class AttentionExitHead(keras.layers.Layer):
    """FastBERT's student: project to d, masked attention, [CLS], dense(d, tanh), dense.

    Only the [CLS] row is read afterwards, so it alone is the attention's
    query; the keys and values are every (unpadded) token. That equals full
    self-attention followed by taking [CLS], at 1/T of the query cost.
    With `depth > 1`, `depth - 1` keras-hub transformer blocks of width d
    first let every token attend to every other.

    At inference a head of depth 1 computes the same numbers in fewer
    products (`_cls_attention`).
    """

    def __init__(self, num_labels, hidden_dim=128, num_heads=2, dropout=0.1, depth=1, **kwargs):
        super().__init__(**kwargs)
        self.num_labels = num_labels
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.depth = depth
        self.project = keras.layers.Dense(hidden_dim, name="project")
        self.blocks = [
            keras_hub.layers.TransformerEncoder(
                intermediate_dim=BLOCK_FEED_FORWARD_RATIO * hidden_dim, num_heads=num_heads,
                dropout=dropout, activation="gelu", name=f"block_{i}",
            )
            for i in range(depth - 1)
        ]
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
        for block in self.blocks:
            block.build(projected)
        self.attention.build((batch, 1, self.hidden_dim), projected, projected)
        self.hidden_dense.build((batch, self.hidden_dim))
        self.logits_dense.build((batch, self.hidden_dim))
        self.built = True

    def call(self, hidden, padding_mask, training=False):
        if self.depth == 1 and not training:
            z = self.hidden_dense(self._cls_attention(hidden, padding_mask))
            return z, self.logits_dense(z)
        x = self.project(hidden)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        mask = ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)  # B x 1 x T
        attended = self.attention(x[:, :1, :], x, attention_mask=mask, training=training)
        z = self.hidden_dense(attended[:, 0, :])
        return z, self.logits_dense(self.dropout_layer(z, training=training))

    def _cls_attention(self, hidden, padding_mask):
        """The attention's output for [CLS] (B x d), read off the hidden states.

        With no block between, keys and values are linear in the hidden
        states h: [CLS]'s scores in attention head i are h . (P K_i q_i) plus
        a constant that the softmax cancels (P the projection, K_i, V_i the
        key and value kernels), and its context is V_i of the projection of
        the attention-weighted mean of h (the weights sum to 1). So no token
        but [CLS] is projected: about 1/6 of the products at 25 tokens, and
        no batched product, einsum or transpose of the tokens at any batch
        but one (`rows`): TensorFlow's CPU kernels spend 30-80 us on each
        whatever its size, which made this head half a layer's cost at batch 1.
        """
        attention, project = self.attention, self.project
        query, key, value, output = (
            attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense
        )
        cls = ops.matmul(rows.first_token(hidden), project.kernel) + project.bias
        # keras' masked softmax: a large negative score for every padded key.
        mask_bias = (1.0 - ops.cast(padding_mask, hidden.dtype)) * -1e9
        attended = output.bias
        for i in range(self.num_heads):
            q = (ops.matmul(cls, query.kernel[:, i, :]) + query.bias[i]) * (1.0 / math.sqrt(attention.key_dim))
            direction = ops.matmul(ops.matmul(q, ops.transpose(key.kernel[:, i, :])), ops.transpose(project.kernel))
            weights = ops.softmax(rows.dot_each(hidden, direction) + mask_bias, axis=-1)
            pooled = ops.matmul(rows.weighted_sum(weights, hidden), project.kernel) + project.bias
            values = ops.matmul(pooled, value.kernel[:, i, :]) + value.bias[i]
            attended = attended + ops.matmul(values, output.kernel[i])
        return attended

    def get_config(self):
        config = super().get_config()
        config.update(
            num_labels=self.num_labels,
            hidden_dim=self.hidden_dim,
            num_heads=self.num_heads,
            dropout=self.dropout,
            depth=self.depth,
        )
        return config


def make_head(kind, num_labels, hidden_dim, num_heads, dropout, name, depth=1):
    if kind == "mlp":
        return MLPExitHead(num_labels, hidden_dim=hidden_dim, dropout=dropout, depth=depth, name=name)
    return AttentionExitHead(
        num_labels, hidden_dim=hidden_dim, num_heads=num_heads, dropout=dropout, depth=depth, name=name
    )
