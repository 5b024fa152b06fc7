"""The TF Serving SavedModel: raw strings in, label / probabilities / exit layer out.

Tokenisation runs in the graph (tensorflow-text ops, via keras-hub's
preprocessor), so a client sends text. Early exit runs in the graph too: after
each layer the examples that are sure leave the batch and the rest are cut
to their own longest row: the same `early_exit` graph as `EarlyExitPredictor`.

Signatures (a pair task takes `text` and `text_pair`; the patience rule,
regression's, takes `patience` where the others take `threshold`; a
regression returns `value` and `exit_layer`):
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


def write_saved_model(classifier, preprocessor, label_names, rule, path, text_inputs=("text",)):
    """Writes the SavedModel for `rule` with its threshold (or patience) as default.

    `text_inputs`: the texts one example takes, ("text",) or ("text",
    "text_pair") for a pair task, packed as the trainer packs them.
    """
    labels = tf.constant(list(label_names))
    regression = classifier.num_labels == 1
    # The patience rule's setting is how many exits must agree; the others' a threshold.
    knob = ("patience", tf.int32) if rule.kind == "patience" else ("threshold", tf.float64)
    default_knob = rule.patience if rule.kind == "patience" else rule.threshold
    weights = tf.constant(rule.weights, tf.float64) if rule.kind == "learned" else None

    def outputs(features, setting):
        if rule.kind == "patience":
            tf.debugging.Assert(setting >= 1, ["patience must be at least 1; got", setting])
            threshold, patience = tf.constant(0.0, tf.float64), setting
        else:
            # NaN fails both comparisons, so it is refused too.
            tf.debugging.Assert(
                tf.logical_and(setting >= 0.0, setting <= 1.0),
                ["threshold must be in [0, 1] (0 runs every layer, 1 exits at the first); got", setting],
            )
            threshold, patience = setting, tf.constant(rule.patience, tf.int32)
        probs, exits = early_exit(
            classifier, features, rule.kind, threshold, rule.top_k, patience, rule.tolerance, weights=weights,
            final_exits=rule.final_exits,
        )
        if regression:
            return {"value": probs[:, 0], "exit_layer": exits}
        label_id = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return {
            "label": tf.gather(labels, label_id),
            "label_id": label_id,
            "probabilities": probs,
            "exit_layer": exits,
        }

    def packed(texts):
        # A positional tuple would be read as (x, y): pairs go in as `x=`.
        return preprocessor(x=tuple(texts) if len(texts) > 1 else texts[0])

    texts = [tf.TensorSpec([None], tf.string, name=name) for name in text_inputs]
    setting = tf.TensorSpec([], knob[1], name=knob[0])
    ids = [tf.TensorSpec([None, None], tf.int32, name=name) for name in ("token_ids", "segment_ids", "padding_mask")]
    archive = keras.export.ExportArchive()
    archive.track(classifier)
    if not preprocessor.built:  # a preprocessor is built on its first call
        preprocessor.build(None)
    archive.track(preprocessor)
    archive.add_endpoint(
        "serving_default",
        lambda *args: outputs(packed(args), tf.constant(default_knob, knob[1])),
        input_signature=texts,
    )
    archive.add_endpoint(
        "classify", lambda *args: outputs(packed(args[:-1]), args[-1]), input_signature=texts + [setting],
    )
    archive.add_endpoint(
        "classify_ids",
        lambda token_ids, segment_ids, padding_mask, setting: outputs(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}, setting,
        ),
        input_signature=ids + [setting],
    )
    archive.write_out(path, verbose=False)
    return path
