"""Adaptive early exit: the real layer-by-layer path and a sweep simulator.

`EarlyExitPredictor.predict` runs layer 1 on the whole batch, evaluates
exit 1, and carries on with only the examples that are not yet sure, cut to
their own longest row: the work really shrinks as examples leave.
`simulate` takes every exit's probabilities (computed once with all layers)
and replays the same decisions for any number of thresholds, for sweeps.
Both give identical exit layers and labels (tested).

```python
predictor = EarlyExitPredictor(classifier)
out = predictor.predict(inputs, ExitRule("entropy", speed=0.3))
out.labels, out.exit_layers  # exit layers are 1-based
```
"""

import dataclasses

import numpy as np
import tensorflow as tf


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


def _agree(current, previous, tolerance):
    # Classes agree when equal (tolerance 0); regression values within tolerance.
    return np.abs(current.astype(np.float64) - previous) <= tolerance


def _patience_exits(predictions, patience, tolerance):
    """First layer (0-based) at which the prediction held for `patience` more exits."""
    batch, num_layers = predictions.shape
    exits = np.full(batch, num_layers - 1)
    count = np.zeros(batch, int)
    decided = np.zeros(batch, bool)
    for layer in range(1, num_layers):
        same = _agree(predictions[:, layer], predictions[:, layer - 1], tolerance)
        count = np.where(same, count + 1, 0)
        now = ~decided & (count >= patience) & (layer < num_layers - 1)
        exits[now] = layer
        decided |= now
    return exits


def simulate(exit_probs, rule):
    """Exit decisions from every exit's probabilities (B x L x N)."""
    exit_probs = np.asarray(exit_probs)
    batch, num_layers, _ = exit_probs.shape
    if num_layers == 1:
        exits = np.zeros(batch, int)
    elif rule.kind == "patience":
        exits = _patience_exits(predictions_of(exit_probs), rule.patience, rule.tolerance)
    else:
        sure = rule.uncertainty(exit_probs[:, :-1]) <= rule.speed
        exits = np.where(sure.any(axis=1), sure.argmax(axis=1), num_layers - 1)
    return ExitResult(probs=exit_probs[np.arange(batch), exits], exit_layers=exits + 1)


class EarlyExitPredictor:
    """Runs a trained `MSBertClassifier` layer by layer, dropping finished examples."""

    def __init__(self, classifier):
        self.classifier = classifier
        # One compiled function per step; shapes vary with the batch left.
        self._embed = tf.function(lambda x: classifier.embed(x), reduce_retracing=True)
        self._steps = [
            tf.function(self._step_fn(i), reduce_retracing=True) for i in range(classifier.num_layers)
        ]

    def _step_fn(self, index):
        def step(hidden, padding_mask):
            hidden = self.classifier.transformer_layer(index, hidden, padding_mask)
            _, logits = self.classifier.exit_outputs(index, hidden, padding_mask)
            return hidden, exit_outputs(logits)

        return step

    def predict(self, inputs, rule):
        rule.validate(self.classifier.num_labels)
        mask = np.asarray(inputs["padding_mask"]).astype("int32")
        batch = mask.shape[0]
        num_layers = self.classifier.num_layers
        probs = np.zeros((batch, self.classifier.num_labels), np.float32)
        exits = np.zeros(batch, int)
        active = np.arange(batch)
        hidden = self._embed({k: tf.convert_to_tensor(np.asarray(v).astype("int32")) for k, v in inputs.items()})
        previous = np.full(batch, np.nan)  # agrees with nothing
        count = np.zeros(batch, int)
        for layer in range(num_layers):
            hidden, layer_probs = self._steps[layer](hidden, tf.constant(mask))
            layer_probs = layer_probs.numpy()
            if layer == num_layers - 1:
                done = np.ones(len(active), bool)
            elif rule.kind == "patience":
                labels = predictions_of(layer_probs)
                count = np.where(_agree(labels, previous, rule.tolerance), count + 1, 0)
                previous = labels
                done = count >= rule.patience
            else:
                done = rule.uncertainty(layer_probs) <= rule.speed
            probs[active[done]] = layer_probs[done]
            exits[active[done]] = layer + 1
            keep = ~done
            if not keep.any():
                break
            active, previous, count = active[keep], previous[keep], count[keep]
            mask = mask[keep]
            # Only the rows still running, cut to their own longest row.
            width = int(mask.sum(axis=1).max())
            mask = mask[:, :width]
            hidden = tf.gather(hidden, np.flatnonzero(keep))[:, :width]
        return ExitResult(probs=probs, exit_layers=exits)
