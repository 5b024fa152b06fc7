"""The classifier cut into per-stage functional Keras models, one per layer.

Stage 1 takes `token_ids`, `segment_ids` and `padding_mask` and returns
`hidden` (layer 1's sequence output) and `probabilities` (exit 1); stage `l`
takes `hidden_in` and `padding_mask`; the last stage returns only the
teacher's `probabilities`. Batch and sequence length are dynamic (an app
resizes the inputs to 1 x its sentence's length). Functional models, not `tf.Module`s: only they
convert to LiteRT with their weights inside (FINDINGS 8).

```python
stages = stage_models(classifier)
out = stages[0]({"token_ids": ids, "segment_ids": segs, "padding_mask": mask})
out = stages[1]({"hidden_in": out["hidden"], "padding_mask": mask})
```
"""

import keras

ID_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _id_inputs():
    return {
        name: keras.Input((None,), dtype="int32", name=name)
        for name in ID_INPUTS
    }


def _probabilities(logits):
    return keras.layers.Softmax(name="probabilities")(logits)


def stage_model(classifier, index):
    """Stage `index` (0-based): layer `index` and its exit."""
    if index == 0:
        inputs = _id_inputs()
        mask = inputs["padding_mask"]
        hidden = classifier.embed(inputs)
    else:
        mask = keras.Input((None,), dtype="int32", name="padding_mask")
        hidden = keras.Input((None, classifier.backbone.hidden_dim), name="hidden_in")
        inputs = {"hidden_in": hidden, "padding_mask": mask}
    hidden = classifier.transformer_layer(index, hidden, mask)
    _, logits = classifier.exit_outputs(index, hidden, mask)
    outputs = {"probabilities": _probabilities(logits)}
    if index < classifier.num_layers - 1:
        outputs["hidden"] = hidden
    return keras.Model(inputs, outputs, name=f"stage_{index + 1}")


def stage_models(classifier):
    return [stage_model(classifier, i) for i in range(classifier.num_layers)]


def full_model(classifier):
    """Every layer in one graph, teacher probabilities out: the no-exit baseline."""
    inputs = _id_inputs()
    mask = inputs["padding_mask"]
    hidden = classifier.embed(inputs)
    for index in range(classifier.num_layers):
        hidden = classifier.transformer_layer(index, hidden, mask)
    logits = classifier.teacher_logits(hidden, mask)
    return keras.Model(inputs, {"probabilities": _probabilities(logits)}, name="teacher")
