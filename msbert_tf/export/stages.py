"""The classifier cut into per-stage functional Keras models, one per layer.

Stage 1 takes `token_ids`, `segment_ids` and `padding_mask` and returns
`hidden` (layer 1's sequence output) and `probabilities` (exit 1; for a
regression task `value`, the exit's one output); stage `l` takes `hidden_in`
and `padding_mask`; the last stage returns only the teacher's output. One
example at a time, of any length (an app resizes the inputs to 1 x its
sentence's length). Functional models, not `tf.Module`s: only they convert to
LiteRT with their weights inside (FINDINGS 8).

With the batch fixed at 1, the transformer layers and deeper attention exit
heads run on the example's rows (T x H) with reshapes of constant shape
(`OneExample`; heads of depth 1 and the teacher read the rows so on their
own, `models.rows`), where Keras' own layers, for any batch, compute every
reshape's shape in the graph: XNNPACK, which runs LiteRT's CPU graphs, takes
no such reshape, so each layer fell into 15 delegated pieces with LiteRT's
own kernels between, and re-planned each piece after a change of length.

```python
stages = stage_models(classifier)
out = stages[0]({"token_ids": ids, "segment_ids": segs, "padding_mask": mask})
out = stages[1]({"hidden_in": out["hidden"], "padding_mask": mask})
```
"""

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from msbert_tf.models.heads import AttentionExitHead

ID_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _id_inputs():
    return {name: keras.Input(batch_shape=(1, None), dtype="int32", name=name) for name in ID_INPUTS}


def _attention(attention, query, values, mask_bias):
    """keras' `MultiHeadAttention` of `query` rows (Q x H) over `values` rows
    (T x H) of one example, in 2-D products and constant-shape reshapes."""
    heads = attention.num_heads

    def project(dense, rows):  # -> heads x rows x size
        kernel = ops.reshape(dense.kernel, (dense.kernel.shape[0], -1))
        projected = ops.matmul(rows, kernel) + ops.reshape(dense.bias, (-1,))
        return ops.transpose(ops.reshape(projected, (-1, heads, kernel.shape[1] // heads)), (1, 0, 2))

    query = project(attention._query_dense, query) * (1.0 / math.sqrt(attention.key_dim))
    key, value = project(attention._key_dense, values), project(attention._value_dense, values)
    weights = ops.softmax(ops.matmul(query, ops.transpose(key, (0, 2, 1))) + mask_bias, axis=-1)
    context = ops.transpose(ops.matmul(weights, value), (1, 0, 2))
    output = attention._output_dense
    context = ops.reshape(context, (-1, output.kernel.shape[0] * output.kernel.shape[1]))
    return ops.matmul(context, ops.reshape(output.kernel, (context.shape[1], -1))) + output.bias


def _attention_block(layer, rows, mask_bias):
    """keras-hub's `TransformerEncoder` up to its feed-forward's input (the residual)."""
    residual = rows
    if layer.normalize_first:
        rows = layer._self_attention_layer_norm(rows)
    rows = _attention(layer._self_attention_layer, rows, rows, mask_bias) + residual
    if not layer.normalize_first:
        rows = layer._self_attention_layer_norm(rows)
    return rows


@dataclasses.dataclass(frozen=True)
class Outliers:
    """A transformer layer's feed-forward outliers: `neurons` of its
    intermediate activations and `channels` of its output, each computed in
    products of their own: the same numbers, but an int8 graph then gives
    them, and the rest, scales of their own (`int8`)."""

    neurons: tuple = ()
    channels: tuple = ()


def _columns_apart(dense, rows, columns):
    """`dense(rows)` as two products: every column but `columns` (there 0:
    the activations of keras-hub's feed-forward are 0 at 0), and `columns`
    alone (None where there are none)."""
    if not columns:
        return dense(rows), None
    keep = np.ones(dense.kernel.shape[1], np.float32)
    keep[list(columns)] = 0.0
    rest = dense.activation(ops.matmul(rows, dense.kernel * keep) + dense.bias * keep)
    apart = dense.activation(ops.matmul(rows, ops.take(dense.kernel, columns, axis=1)) + ops.take(dense.bias, columns))
    return rest, apart


def _feedforward_input(layer, rows):
    return layer._feedforward_layer_norm(rows) if layer.normalize_first else rows


def _feedforward(layer, rows, outliers=Outliers()):
    """The feed-forward's output, before the residual sum."""
    rows = _feedforward_input(layer, rows)
    inner, outer = layer._feedforward_intermediate_dense, layer._feedforward_output_dense
    inner_rows, neurons = _columns_apart(inner, rows, outliers.neurons)
    output, channels = _columns_apart(outer, inner_rows, outliers.channels)
    if channels is not None:  # back in their places, by a one-hot product
        output = output + ops.matmul(channels, np.eye(outer.kernel.shape[1], dtype=np.float32)[list(outliers.channels)])
    if neurons is not None:  # their rows of the output kernel
        output = output + ops.matmul(neurons, ops.take(outer.kernel, outliers.neurons, axis=0))
    return output


def _encoder(layer, rows, mask_bias, outliers=Outliers()):
    """keras-hub's `TransformerEncoder.call` on one example's rows, at inference."""
    rows = _attention_block(layer, rows, mask_bias)
    rows = _feedforward(layer, rows, outliers) + rows
    if not layer.normalize_first:
        rows = layer._feedforward_layer_norm(rows)
    return rows


def _mask_bias(padding_mask, dtype):
    # keras' masked softmax: a large negative score for every padded key.
    return (1.0 - ops.cast(padding_mask, dtype)) * -1e9


def feedforward_values(layer, hidden, padding_mask):
    """Transformer `layer`'s feed-forward intermediate activations (T x I)
    and output (T x H, before the residual sum) on one example (`hidden`:
    1 x T x H), as its stage computes them."""
    rows = ops.reshape(hidden, (-1, hidden.shape[-1]))
    rows = _attention_block(layer, rows, _mask_bias(padding_mask, rows.dtype))
    inner = layer._feedforward_intermediate_dense(_feedforward_input(layer, rows))
    return inner, layer._feedforward_output_dense(inner)


class OneExample(keras.layers.Layer):
    """A backbone's transformer layer, or an `AttentionExitHead`, on one
    example (1 x T x H): the same numbers as the layer's own call, with
    every reshape of constant shape, and a layer's feed-forward `outliers`
    apart. Export only (never saved)."""

    def __init__(self, layer, outliers=Outliers(), **kwargs):
        super().__init__(name=f"one_example_{layer.name}", **kwargs)
        self.layer = layer
        self.outliers = outliers

    def call(self, hidden, padding_mask):
        rows = ops.reshape(hidden, (-1, hidden.shape[-1]))
        mask_bias = _mask_bias(padding_mask, rows.dtype)
        if not isinstance(self.layer, AttentionExitHead):
            return ops.reshape(_encoder(self.layer, rows, mask_bias, self.outliers), (1, -1, rows.shape[-1]))
        head = self.layer
        rows = head.project(rows)
        for block in head.blocks:
            rows = _encoder(block, rows, mask_bias)
        z = head.hidden_dense(_attention(head.attention, rows[:1], rows, mask_bias))
        return z, head.logits_dense(z)


def input_signature(model):
    """A stage model's inputs as declared, batch size included (Keras'
    `input_signature`): Keras' exporters would leave the batch free, and a
    stage computes one example."""
    import tensorflow as tf

    return [{t.name: tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs}]


def output_name(classifier):
    """What each stage's exit returns: class `probabilities`, or a regression's `value`."""
    return "value" if classifier.num_labels == 1 else "probabilities"


def _exit_output(classifier, logits):
    # A softmax over a regression's one logit would always be 1.
    if classifier.num_labels == 1:
        return {"value": keras.layers.Identity(name="value")(logits)}
    return {"probabilities": keras.layers.Softmax(name="probabilities")(logits)}


def stage_model(classifier, index, outliers=Outliers()):
    """Stage `index` (0-based): layer `index`, its feed-forward `outliers`
    apart, and its exit."""
    if index == 0:
        inputs = _id_inputs()
        mask = inputs["padding_mask"]
        hidden = classifier.embed(inputs)
    else:
        mask = keras.Input(batch_shape=(1, None), dtype="int32", name="padding_mask")
        hidden = keras.Input(batch_shape=(1, None, classifier.backbone.hidden_dim), name="hidden_in")
        inputs = {"hidden_in": hidden, "padding_mask": mask}
    hidden = _layer(classifier, index, hidden, mask, outliers)
    outputs = _exit_output(classifier, _exit_logits(classifier, index, hidden, mask))
    if index < classifier.num_layers - 1:
        outputs["hidden"] = hidden
    return keras.Model(inputs, outputs, name=f"stage_{index + 1}")


def _layer(classifier, index, hidden, mask, outliers=Outliers()):
    return OneExample(classifier.backbone.transformer_layers[index], outliers)(hidden, mask)


def _exit_logits(classifier, index, hidden, mask):
    head = classifier.exit_heads[index] if index < classifier.num_layers - 1 else None
    # A head of depth 1 reads the example's rows in products of constant shape on its own (`models.rows`).
    if isinstance(head, AttentionExitHead) and head.depth > 1:
        return OneExample(head)(hidden, mask)[1]
    return classifier.exit_outputs(index, hidden, mask)[1]


def stage_models(classifier, outliers=None):
    """Every stage; `outliers[i]`: layer i's `Outliers` (none by default)."""
    outliers = outliers or [Outliers()] * classifier.num_layers
    return [stage_model(classifier, i, outliers[i]) for i in range(classifier.num_layers)]


def full_model(classifier, outliers=None):
    """Every layer in one graph, the teacher's output out: the no-exit baseline."""
    return first_layers_model(classifier, classifier.num_layers, outliers)


def first_layers_model(classifier, count, outliers=None):
    """The first `count` layers in one graph and the exit after the last of
    them (the teacher's head after every layer): a static smaller model of
    the same checkpoint, what a user might ship instead of early exit."""
    inputs = _id_inputs()
    mask = inputs["padding_mask"]
    hidden = classifier.embed(inputs)
    outliers = outliers or [Outliers()] * classifier.num_layers
    for index in range(count):
        hidden = _layer(classifier, index, hidden, mask, outliers[index])
    name = "teacher" if count == classifier.num_layers else f"first_{count}_layers"
    outputs = _exit_output(classifier, _exit_logits(classifier, count - 1, hidden, mask))
    return keras.Model(inputs, outputs, name=name)
