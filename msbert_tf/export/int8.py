"""`--quantize=int8`: int8 weights and int8 activations for the matrix
products, their scales calibrated on the run's own training sentences.

Every fully connected layer (attention's projections, the feed-forward, the
exit heads) and the embedding tables take int8 inputs and int8 weights,
as integer accelerators run them; the other ops stay in float. Quantizing
those too (LayerNorm's variance, the residual sums, attention's
activation-by-activation products, softmax, GELU) cost 3.1 points of SST-2
dev accuracy (85.6% against 88.7%), and keeping only attention and
LayerNorm in float still 1.4; this choice 0.35 (BENCHMARKS.md "Which ops
int8 leaves in float").

A few channels of each layer's feed-forward output reach 30-180 times the
median channel's largest value (SST-2's MiniLM, layer 1: 194 against 1.1),
fed by one or two intermediate neurons at 8-16 times the median one's (24.5
against 1.6): one int8 scale for each whole tensor rounded the other values
coarsely, and the chain's final lost 1.0-1.7 points to float32 on held-out
rows (two runs, three calibration draws each). Those neurons and channels
(`outliers`) get products, and so scales, of their own: at most 0.4 points
lost (BENCHMARKS.md "int8's lost points found").

The calibrator runs every sample through one plan, so the samples share one
length: rows at least `SAMPLE_LENGTH` tokens long, cut to it. Padded
samples instead put the attention mask's large negative numbers into the
ranges: 77% dev accuracy.

```python
samples = id_samples(training_sample(trained), trained.preprocessor)
for index, (model, inputs) in enumerate(stage_models(trained.classifier, samples)):
    write_int8(model, f"stage_{index + 1}.tflite", inputs)
```
"""

import functools
import os
import tempfile

import numpy as np
import tensorflow as tf

from msbert_tf.data import pipeline
from msbert_tf.errors import UserInputError
from msbert_tf.export import stages
from msbert_tf.inference.calibration import exit_model_rows

# Left in float: every op type of the stage graphs that carries activations,
# but the fully connected layers and the embedding lookups (GATHER).
FLOAT_OPS = ("ADD", "SUB", "MUL", "MEAN", "SQUARED_DIFFERENCE", "RSQRT", "BATCH_MATMUL", "SOFTMAX",
             "GELU", "TANH", "RESHAPE", "TRANSPOSE", "STRIDED_SLICE")
# A feed-forward neuron or output channel whose largest magnitude on the
# calibration samples passes this many times the median one's is computed apart.
OUTLIER_RATIO = 4.0
SAMPLE_LENGTH = 32
SAMPLE_COUNT = 200
# Rows read to find SAMPLE_COUNT of SAMPLE_LENGTH tokens (SST-2: 5% of its phrases are that long).
ROWS_READ = 4000


def training_sample(trained):
    """`ROWS_READ` rows of the run's training data (those it trained on),
    drawn with the run's seed."""
    try:
        return exit_model_rows(trained, ROWS_READ)
    except UserInputError as e:
        raise UserInputError(
            f"int8 calibrates on the run's training rows, which cannot be read here ({e}) "
            "Give --representative_file=<a text file, one example per line> instead."
        ) from None


def id_samples(examples, preprocessor, count=SAMPLE_COUNT, length=SAMPLE_LENGTH):
    """Up to `count` calibration samples ({input: 1 x T int32}) from
    `examples`, all of one length T: rows of at least `length` tokens cut to
    it, or where fewer than `count` rows are that long, the `count`-th
    longest row's length."""
    if len(examples) == 0:
        raise UserInputError("int8 export calibrates on sentences, and none were given: give some rows.")
    split = pipeline.encode(examples, preprocessor, name="int8 calibration rows")
    longest = np.sort(split.lengths)[::-1]
    length = min(length, int(longest[min(count, len(longest)) - 1]))
    rows = np.flatnonzero(split.lengths >= length)[:count]
    return [{k: np.ascontiguousarray(v[i : i + 1, :length]) for k, v in split.features.items()} for i in rows]


def _layer_inputs(classifier, samples):
    """`samples` as one batch, and each transformer layer's input on it, as
    the float classifier computes them."""
    batch = {k: np.concatenate([s[k] for s in samples]) for k in samples[0]}
    return batch, [classifier.embed(batch)] + classifier.hidden_states(batch)[:-1]


def _stage_samples(batch, inputs):
    # The stage graphs take one example: the classifier's own layers ran the batch.
    feeds = [batch] + [{"hidden_in": np.asarray(hidden, np.float32), "padding_mask": batch["padding_mask"]}
                       for hidden in inputs[1:]]
    return [[{k: v[i : i + 1] for k, v in feed.items()} for i in range(len(batch["padding_mask"]))] for feed in feeds]


def stage_samples(classifier, samples):
    """The calibration inputs of each stage of `classifier`: `samples` for
    the first, then the float hidden state after the layer before."""
    return _stage_samples(*_layer_inputs(classifier, samples))


def _outliers(classifier, batch, inputs, ratio):
    found = []
    for layer, hidden in zip(classifier.backbone.transformer_layers, inputs):
        # One traced graph a layer: op by op, the samples took 12 s of a 50 s export (4 s so).
        values_of = tf.function(functools.partial(stages.feedforward_values, layer))
        values = [values_of(hidden[i : i + 1], batch["padding_mask"][i : i + 1]) for i in range(len(hidden))]
        peaks = [np.max([np.abs(np.asarray(v[part])).max(0) for v in values], axis=0) for part in (0, 1)]
        neurons, channels = (tuple(int(c) for c in np.flatnonzero(p > ratio * np.median(p))) for p in peaks)
        found.append(stages.Outliers(neurons, channels))
    return found


def outliers(classifier, samples, ratio=OUTLIER_RATIO):
    """Each transformer layer's `stages.Outliers`: the feed-forward's
    intermediate neurons and output channels whose largest magnitude over
    `samples` (`id_samples`) passes `ratio` times the median one's, as the
    float classifier computes them."""
    return _outliers(classifier, *_layer_inputs(classifier, samples), ratio)


def stage_models(classifier, samples):
    """The stage models int8 converts, each with its calibration inputs:
    `[(model, inputs)]` for `samples` (`id_samples`); the float layers run
    the samples once for both."""
    batch, inputs = _layer_inputs(classifier, samples)
    models = stages.stage_models(classifier, _outliers(classifier, batch, inputs, OUTLIER_RATIO))
    return list(zip(models, _stage_samples(batch, inputs)))


def write_int8(model, path, samples, float_ops=FLOAT_OPS):
    """Converts `model` with int8 matrix products, calibrated on `samples`
    (its inputs, one dict per sample), and writes it to `path`; op types in
    `float_ops` stay in float."""
    # The quantization debugger is LiteRT's way to leave chosen op types in
    # float; it takes a converter, which Keras' own LiteRT export does not hand out.
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(path))) as folder:
        model.export(folder, format="tf_saved_model", verbose=False, input_signature=stages.input_signature(model))
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.representative_dataset = lambda: iter(samples)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            # The debugger's own runs take each sample's arrays in the signature's (sorted) order.
            debug_dataset=lambda: ([s[name] for name in sorted(s)] for s in samples),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops)),
        )
        flatbuffer = debugger.get_nondebug_quantized_model()
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return path
