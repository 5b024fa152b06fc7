"""The TF Serving SavedModel: raw strings in, label / probabilities / exit layer out.

Tokenisation runs in the graph (tensorflow-text ops, via keras-hub's
preprocessor), so a client sends text. Early exit runs in the graph too: after
each layer the examples that are sure leave the batch and the rest are cut
to their own longest row: the same `early_exit` graph as `EarlyExitPredictor`.

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

from msbert_tf.inference.early_exit import early_exit


def write_saved_model(classifier, preprocessor, label_names, rule, path):
    """Writes the SavedModel for `rule` (entropy, topk or learned) with its threshold as default."""
    labels = tf.constant(list(label_names))

    def outputs(features, threshold):
        # NaN fails both comparisons, so it is refused too.
        tf.debugging.Assert(
            tf.logical_and(threshold >= 0.0, threshold <= 1.0),
            ["threshold must be in [0, 1] (0 runs every layer, 1 exits at the first); got", threshold],
        )
        weights = tf.constant(rule.weights, tf.float64) if rule.kind == "learned" else None
        probs, exits = early_exit(classifier, features, rule.kind, threshold, rule.top_k, weights=weights)
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
