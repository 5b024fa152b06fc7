"""int8's feed-forward outliers: found on the calibration samples, computed
apart with the float numbers unchanged, and rounded less in int8."""

import keras
import numpy as np
import pytest

from msbert_tf.config import ModelConfig
from msbert_tf.data.readers import Examples
from msbert_tf.export import int8, stages
from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier

NEURON, CHANNEL = 5, 3
TEXTS = [f"sentence {i} says the film was {'good' if i % 2 else 'bad'} and {'long ' * (i % 4)}in parts" for i in range(24)]


@pytest.fixture(scope="module")
def planted():
    """A tiny classifier whose first layer has one intermediate neuron and
    one output channel far larger than the others, as trained BERTs do.
    Seeded: how much the tiny model's other int8 errors hide the outliers'
    share varies with its random weights (apart against plain: 1.1-3x over
    four seeds)."""
    keras.utils.set_random_seed(0)
    backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    classifier = MSBertClassifier(backbone, num_labels=2, head="attention", head_dim=8)
    layer = backbone.transformer_layers[0]
    inner, outer = layer._feedforward_intermediate_dense, layer._feedforward_output_dense
    kernel, bias = inner.kernel.numpy(), inner.bias.numpy()
    kernel[:, NEURON] *= 30.0
    bias[NEURON] = 3.0
    inner.kernel.assign(kernel)
    inner.bias.assign(bias)
    kernel = outer.kernel.numpy()
    kernel[:, CHANNEL] *= 100.0
    outer.kernel.assign(kernel)
    samples = int8.id_samples(Examples(TEXTS, np.zeros(len(TEXTS), np.int32)), preprocessor, count=20, length=8)
    return classifier, samples


def test_the_planted_outliers_are_found_and_the_float_numbers_stay(planted):
    classifier, samples = planted
    found = int8.outliers(classifier, samples)
    assert NEURON in found[0].neurons and CHANNEL in found[0].channels
    assert len(found[0].neurons) < 4 and len(found[0].channels) < 4
    plain, apart = stages.stage_models(classifier), stages.stage_models(classifier, found)
    for index, feed in enumerate(int8.stage_samples(classifier, samples[:3])):
        for name, want in plain[index](feed[0]).items():
            np.testing.assert_allclose(apart[index](feed[0])[name], want, rtol=1e-5, atol=1e-5)


def test_outliers_apart_round_the_other_values_less_in_int8(planted, tmp_path):
    """Stage 1's hidden state in int8 against Keras, on samples the
    calibration did not see, with the outliers apart and without."""
    from msbert_tf.export.runner import Stage

    classifier, samples = planted
    calibration, held_out = samples[:14], samples[14:]
    model = stages.stage_model(classifier, 0)
    errors = {}
    for name, outliers in (("plain", stages.Outliers()), ("apart", int8.outliers(classifier, calibration)[0])):
        path = int8.write_int8(stages.stage_model(classifier, 0, outliers), str(tmp_path / f"{name}.tflite"),
                               int8.stage_samples(classifier, calibration)[0])
        graph = Stage(path)
        errors[name] = max(
            np.sqrt(np.mean((graph(**s)["hidden"] - model(s)["hidden"]) ** 2) / np.mean(np.asarray(model(s)["hidden"]) ** 2))
            for s in held_out
        )
    assert errors["apart"] < errors["plain"] / 2, errors
