"""The TF Serving SavedModel: raw strings in, label / probabilities / exit layer out.

Tokenisation runs in the graph (tensorflow-text ops, via keras-hub's
preprocessor), so a client sends text. Early exit runs in the graph too: after
each layer the examples that are sure leave the batch and the rest are cut
to their own longest row, as `EarlyExitPredictor` does in Python.

Signatures:
- `serving_default(text)`: the exported default threshold;
- `classify(text, threshold)`: any threshold in [0, 1];
- `classify_ids(token_ids, segment_ids, padding_mask, threshold)`: for
  clients that tokenise themselves.

A consumer needs only `tensorflow` and `import tensorflow_text` (which
registers the tokenizer ops):

```python
import tensorflow as tf, tensorflow_text  # noqa: F401
model = tf.saved_model.load("OUT/saved_model")
model.signatures["classify"](text=tf.constant(["a gripping film"]), threshold=tf.constant(0.3, tf.float64))
```
"""

import keras
import tensorflow as tf

_TINY = 1e-12


def uncertainty(probs, kind, top_k):
    """`inference.uncertainty` in TF ops, in float64 like the numpy version."""
    p = tf.cast(probs, tf.float64)
    if kind == "topk":
        p = tf.math.top_k(p, k=top_k).values
        p = p / tf.maximum(tf.reduce_sum(p, axis=-1, keepdims=True), _TINY)
    n = tf.cast(tf.shape(p)[-1], tf.float64)
    return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, _TINY)), axis=-1) / tf.math.log(n)


def _trim(tensors, mask):
    """Cuts every tensor (B x T ...) to the longest row of `mask`."""
    # At least 1: once every example has exited, later layers see an empty
    # batch, and the heads still read row 0.
    width = tf.maximum(tf.reduce_max(tf.reduce_sum(mask, axis=1)), 1)
    return [t[:, :width] for t in tensors]


def early_exit(classifier, inputs, threshold, kind, top_k):
    """Per-example early exit on a batch: `(probabilities, exit_layer)` (1-based)."""
    mask = tf.cast(inputs["padding_mask"], tf.int32)
    ids, segments, mask = _trim([inputs["token_ids"], inputs["segment_ids"], mask], mask)
    batch = tf.shape(mask)[0]
    hidden = classifier.embed({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    probs = tf.zeros([batch, classifier.num_labels], tf.float32)
    exits = tf.zeros([batch], tf.int32)
    active = tf.range(batch)
    last = classifier.num_layers - 1
    for layer in range(classifier.num_layers):
        hidden = classifier.transformer_layer(layer, hidden, mask)
        layer_probs = tf.nn.softmax(classifier.exit_outputs(layer, hidden, mask)[1], axis=-1)
        if layer == last:
            done = tf.ones([tf.shape(active)[0]], tf.bool)
        else:
            done = uncertainty(layer_probs, kind, top_k) <= threshold
        rows = tf.boolean_mask(active, done)[:, None]
        probs = tf.tensor_scatter_nd_update(probs, rows, tf.boolean_mask(layer_probs, done))
        exits = tf.tensor_scatter_nd_update(exits, rows, tf.fill([tf.shape(rows)[0]], layer + 1))
        if layer < last:
            keep = tf.logical_not(done)
            active = tf.boolean_mask(active, keep)
            hidden, mask = _trim([tf.boolean_mask(hidden, keep), tf.boolean_mask(mask, keep)],
                                 tf.boolean_mask(mask, keep))
    return probs, exits


def write_saved_model(classifier, preprocessor, label_names, rule, path):
    """Writes the SavedModel for `rule` (entropy or topk) with its threshold as default."""
    labels = tf.constant(list(label_names))

    def outputs(features, threshold):
        # NaN fails both comparisons, so it is refused too.
        tf.debugging.Assert(
            tf.logical_and(threshold >= 0.0, threshold <= 1.0),
            ["threshold must be in [0, 1] (0 runs every layer, 1 exits at the first); got", threshold],
        )
        probs, exits = early_exit(classifier, features, threshold, rule.kind, rule.top_k)
        label_id = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(labels, label_id),
            "label_id": label_id,
            "probabilities": probs,
            "exit_layer": exits,
        }

    text = tf.TensorSpec([None], tf.string, name="text")
    threshold = tf.TensorSpec([], tf.float64, name="threshold")
    ids = {name: tf.TensorSpec([None, None], tf.int32, name=name)
           for name in ("token_ids", "segment_ids", "padding_mask")}
    archive = keras.export.ExportArchive()
    archive.track(classifier)
    if not preprocessor.built:  # a preprocessor is built on its first call
        preprocessor.build(None)
    archive.track(preprocessor)
    archive.add_endpoint(
        "serving_default",
        lambda text: outputs(preprocessor(text), tf.constant(rule.speed, tf.float64)),
        input_signature=[text],
    )
    archive.add_endpoint(
        "classify", lambda text, threshold: outputs(preprocessor(text), threshold),
        input_signature=[text, threshold],
    )
    archive.add_endpoint(
        "classify_ids",
        lambda token_ids, segment_ids, padding_mask, threshold: outputs(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            threshold,
        ),
        input_signature=[ids["token_ids"], ids["segment_ids"], ids["padding_mask"], threshold],
    )
    archive.write_out(path, verbose=False)
    return path
