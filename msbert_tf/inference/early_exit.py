"""Adaptive early exit: the real layer-by-layer path and a sweep simulator.

`EarlyExitPredictor.predict` runs layer 1 on the whole batch, evaluates
exit 1, and carries on with only the examples that are not yet sure, cut to
their own longest row: the work really shrinks as examples leave. It is one
TF graph (`early_exit`), also what the SavedModel serves.
`simulate` takes every exit's probabilities (computed once with all layers)
and replays the same decisions for any number of thresholds, for sweeps.
Both give identical exit layers and labels (tested).

```python
predictor = EarlyExitPredictor(classifier)
out = predictor.predict(inputs, ExitRule("entropy", threshold=0.3))
out.labels, out.exit_layers  # exit layers are 1-based
```
"""

import dataclasses

import numpy as np
import tensorflow as tf

from msbert_tf.errors import UserInputError
from msbert_tf.inference.uncertainty import graph_sure


def exit_outputs(logits):
    """What an exit outputs: class probabilities, or a regression's value (one logit)."""
    return logits if logits.shape[-1] == 1 else tf.nn.softmax(logits, axis=-1)


def predictions_of(outputs):
    """The class (argmax), or for regression the value itself."""
    outputs = np.asarray(outputs)
    return outputs[..., 0] if outputs.shape[-1] == 1 else outputs.argmax(axis=-1)


@dataclasses.dataclass
class ExitResult:
    probs: np.ndarray  # B x N, of the exit taken (B x 1: regression values)
    exit_layers: np.ndarray  # B, 1-based

    @property
    def labels(self):
        return predictions_of(self.probs)


def check_final_exits(final_exits, num_layers):
    if final_exits > num_layers:
        raise UserInputError(
            f"final_exits={final_exits} averages more exits than the model has ({num_layers}): "
            f"give at most {num_layers}."
        )


def with_final(exit_probs, final_exits):
    """Every exit's outputs (B x L x N) with the last replaced by the final
    prediction: the mean of the last `final_exits` exits."""
    exit_probs = np.asarray(exit_probs)
    check_final_exits(final_exits, exit_probs.shape[1])
    if final_exits == 1:
        return exit_probs
    final = exit_probs.copy()
    final[:, -1] = exit_probs[:, -final_exits:].mean(axis=1)
    return final


def simulate(exit_probs, rule):
    """Exit decisions from every exit's probabilities (B x L x N); the last
    exit's outputs are the rule's final prediction (`with_final`)."""
    exit_probs = with_final(exit_probs, rule.final_exits)
    batch, num_layers, _ = exit_probs.shape
    if num_layers == 1:
        exits = np.zeros(batch, int)
    else:
        sure = rule.sure(exit_probs[:, :-1])
        exits = np.where(sure.any(axis=1), sure.argmax(axis=1), num_layers - 1)
    return ExitResult(probs=exit_probs[np.arange(batch), exits], exit_layers=exits + 1)


def _trim(tensors, mask):
    """Cuts every tensor (B x T ...) to the longest row of `mask` (at least 1)."""
    width = tf.maximum(tf.reduce_max(tf.reduce_sum(mask, axis=1)), 1)
    return [t[:, :width] for t in tensors]


def early_exit(classifier, inputs, kind, threshold, top_k=2, patience=2, tolerance=0.0, weights=None,
               final_exits=1):
    """Per-example early exit on a batch, in TF ops: `(outputs, exit_layer)`.

    After each layer the examples that are sure leave the batch and the rest
    are cut to their own longest row; once none is left, no later layer runs
    (a `tf.cond` per layer). One graph, so a call pays the per-call cost of
    TensorFlow once, not once per layer. `outputs` are the probabilities (or
    a regression's value) of the exit taken; exit layers are 1-based.
    `weights`: the `learned` rule's (L - 1) x (F + 1) coefficients.
    `final_exits` (a tensor may carry it): the final prediction is the mean
    of the last `final_exits` exits, summed on the way by the rows that
    have not left.
    """
    mask = tf.cast(inputs["padding_mask"], tf.int32)
    ids, segments, mask = _trim([inputs["token_ids"], inputs["segment_ids"], mask], mask)
    batch = tf.shape(mask)[0]
    hidden = classifier.embed({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
    last = classifier.num_layers - 1

    final_exits = tf.cast(final_exits, tf.float32)

    def from_layer(layer, hidden, mask, active, state, total, outputs, exits):
        hidden = classifier.transformer_layer(layer, hidden, mask)
        layer_outputs = exit_outputs(classifier.exit_outputs(layer, hidden, mask)[1])
        total = tf.where(layer >= last + 1 - final_exits, total + layer_outputs, total)
        if layer == last:
            layer_outputs = total / final_exits
            done = tf.ones_like(active, tf.bool)
        else:
            done, state = graph_sure(kind, top_k, layer_outputs, state, threshold, patience, tolerance,
                                     weights[layer] if kind == "learned" else None)
        # Row indices and gathers: a boolean mask is some ten ops per tensor.
        leaving = tf.where(done)[:, 0]
        rows = tf.gather(active, leaving)[:, None]
        outputs = tf.tensor_scatter_nd_update(outputs, rows, tf.gather(layer_outputs, leaving))
        exits = tf.tensor_scatter_nd_update(exits, rows, tf.fill([tf.shape(rows)[0]], layer + 1))
        if layer == last:
            return outputs, exits
        staying = tf.where(tf.logical_not(done))[:, 0]

        def go_on():
            kept_mask = tf.gather(mask, staying)
            kept_hidden, kept_mask = _trim([tf.gather(hidden, staying), kept_mask], kept_mask)
            return from_layer(
                layer + 1, kept_hidden, kept_mask, tf.gather(active, staying),
                tuple(tf.gather(s, staying) for s in state), tf.gather(total, staying), outputs, exits,
            )

        return tf.cond(tf.size(staying) > 0, go_on, lambda: (outputs, exits))

    # No previous prediction (NaN agrees with nothing), no run, no previous top probability.
    state = (tf.fill([batch], tf.constant(float("nan"), tf.float64)), tf.zeros([batch], tf.int32),
             tf.zeros([batch], tf.float64))
    outputs = tf.zeros([batch, classifier.num_labels], tf.float32)
    return from_layer(0, hidden, mask, tf.range(batch), state, outputs, outputs, tf.zeros([batch], tf.int32))


class EarlyExitPredictor:
    """Runs a trained `MSBertClassifier` layer by layer, dropping finished examples.

    One compiled `early_exit` graph per rule kind (and K); the threshold,
    patience and tolerance are its inputs, so a sweep traces nothing new.
    """

    def __init__(self, classifier):
        self.classifier = classifier
        self._compiled = {}

    def _graph(self, kind, top_k):
        top_k = top_k if kind == "topk" else None
        if (kind, top_k) not in self._compiled:
            self._compiled[kind, top_k] = tf.function(
                lambda inputs, threshold, patience, tolerance, weights, final_exits: early_exit(
                    self.classifier, inputs, kind, threshold, top_k, patience, tolerance, weights, final_exits
                ),
                reduce_retracing=True,
            )
        return self._compiled[kind, top_k]

    def predict(self, inputs, rule):
        rule.validate(self.classifier.num_labels)
        check_final_exits(rule.final_exits, self.classifier.num_layers)
        outputs, exits = self._graph(rule.kind, rule.top_k)(
            {k: tf.convert_to_tensor(np.asarray(v).astype("int32")) for k, v in inputs.items()},
            tf.constant(rule.threshold, tf.float64),
            tf.constant(rule.patience, tf.int32),
            tf.constant(rule.tolerance, tf.float64),
            # One signature for every rule: the weights are an input, not a constant.
            tf.constant(rule.weights if rule.weights is not None else np.zeros((1, 1)), tf.float64),
            tf.constant(rule.final_exits, tf.int32),
        )
        return ExitResult(probs=outputs.numpy(), exit_layers=exits.numpy().astype(int))
