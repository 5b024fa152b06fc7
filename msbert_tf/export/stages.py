"""The classifier cut into per-stage functional Keras models, one per layer.

Stage 1 takes `token_ids`, `segment_ids` and `padding_mask` and returns
`hidden` (layer 1's sequence output) and `probabilities` (exit 1; for a
regression task `value`, the exit's one output); stage `l` takes `hidden_in`
and `padding_mask`; the last stage returns only the teacher's output. Batch and sequence length are dynamic (an app
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


def output_name(classifier):
    """What each stage's exit returns: class `probabilities`, or a regression's `value`."""
    return "value" if classifier.num_labels == 1 else "probabilities"


def _exit_output(classifier, logits):
    # A softmax over a regression's one logit would always be 1.
    if classifier.num_labels == 1:
        return {"value": keras.layers.Identity(name="value")(logits)}
    return {"probabilities": keras.layers.Softmax(name="probabilities")(logits)}


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
    outputs = _exit_output(classifier, logits)
    if index < classifier.num_layers - 1:
        outputs["hidden"] = hidden
    return keras.Model(inputs, outputs, name=f"stage_{index + 1}")


def stage_models(classifier):
    return [stage_model(classifier, i) for i in range(classifier.num_layers)]


def full_model(classifier):
    """Every layer in one graph, the teacher's output out: the no-exit baseline."""
    return first_layers_model(classifier, classifier.num_layers)


def first_layers_model(classifier, count):
    """The first `count` layers in one graph and the exit after the last of
    them (the teacher's head after every layer): a static smaller model of
    the same checkpoint, what a user might ship instead of early exit."""
    inputs = _id_inputs()
    mask = inputs["padding_mask"]
    hidden = classifier.embed(inputs)
    for index in range(count):
        hidden = classifier.transformer_layer(index, hidden, mask)
    _, logits = classifier.exit_outputs(count - 1, hidden, mask)
    name = "teacher" if count == classifier.num_layers else f"first_{count}_layers"
    return keras.Model(inputs, _exit_output(classifier, logits), name=name)
