"""Keras model -> LiteRT flatbuffer, builtin ops only, optionally quantized.

Built-in ops only: from TF 2.20 the Python interpreters cannot run Flex
(select TF) ops, and a phone app would have to ship the Flex delegate.

```python
models = stage_models(classifier)
write_litert(models[0], "stage_1.tflite", quantize="dynamic")
write_litert(models[1], "stage_2.tflite", quantize="int8", samples=int8.stage_samples(classifier, samples)[1])
```
"""

import tensorflow as tf

from msbert_tf.errors import UserInputError
from msbert_tf.export import int8, stages

# mode -> converter settings (keras' LiteRT exporter passes them on).
QUANTIZATIONS = {
    "none": {},
    # int8 weights, float activations: ~4x smaller, no calibration data needed.
    "dynamic": {"optimizations": [tf.lite.Optimize.DEFAULT]},
    "float16": {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "target_spec": {"supported_types": [tf.float16]},
    },
    # int8 weights and activations of the matrix products, calibrated on
    # sample inputs (`int8`); converted there.
    "int8": None,
}


def check_quantize(mode):
    if mode not in QUANTIZATIONS:
        raise UserInputError(
            f"unknown quantization {mode!r}: choose from {', '.join(QUANTIZATIONS)}."
        )
    return mode


def write_litert(model, path, quantize="none", samples=None):
    """Converts `model` and writes it to `path` (a `.tflite`); `samples`
    (inputs of `model`, one dict each) calibrate `int8`."""
    if check_quantize(quantize) == "int8":
        return int8.write_int8(model, path, samples)
    settings = dict(QUANTIZATIONS[quantize])
    target_spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS], **settings.pop("target_spec", {})}
    model.export(path, format="litert", verbose=False, input_signature=stages.input_signature(model),
                 target_spec=target_spec, **settings)
    return path


def interpreter(path, num_threads=1):
    """A LiteRT interpreter on `path` (its signature runner allocates tensors per call)."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=path, num_threads=num_threads)
