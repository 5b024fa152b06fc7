"""The learned exit rule: features by hand, the fit, decisions it must and
must not make, and its use through calibration and predict."""

import numpy as np
import pytest

from msbert_tf.errors import UserInputError
from msbert_tf.inference import learned_exit
from msbert_tf.inference.early_exit import simulate
from msbert_tf.inference.uncertainty import ExitRule


def test_features_by_hand():
    probs = np.array([[[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]]])
    f = learned_exit.features(probs)[0]
    np.testing.assert_allclose(f[:, 0], [0.9, 0.6, 0.8, 0.7])  # top probability
    np.testing.assert_allclose(f[:, 2], [0.8, 0.2, 0.6, 0.4])  # margin
    np.testing.assert_array_equal(f[:, 3], [0, 1, 0, 1])  # agrees with the previous exit
    np.testing.assert_array_equal(f[:, 4], [0, 1, 0, 1])  # agreeing run
    np.testing.assert_allclose(f[:, 5], [0, 0.9, 0.6, 0.8])  # previous top probability
    np.testing.assert_allclose(f[:, 6], [0, 0.6, 0, 0.7])


def _agreement_world(n, rng):
    """Three exits; exit 1 agrees with the full model exactly when its top
    probability is above 0.8, whatever its entropy would suggest otherwise."""
    final = rng.integers(0, 2, n)
    top = rng.uniform(0.55, 1.0, n)
    first = np.where(top > 0.8, final, 1 - final)
    probs = np.zeros((n, 3, 2))
    probs[np.arange(n), 0, first] = top
    probs[np.arange(n), 0, 1 - first] = 1 - top
    probs[np.arange(n), 1, final] = 0.7
    probs[np.arange(n), 1, 1 - final] = 0.3
    probs[np.arange(n), 2, final] = 1.0
    return probs


def test_fit_learns_when_an_exit_agrees_and_decides_by_it():
    probs = _agreement_world(4000, np.random.default_rng(0))
    weights = learned_exit.fit(probs)
    assert weights.shape == (2, len(learned_exit.FEATURES) + 1)
    # A hand-made row it must let leave at exit 1, and one it must not.
    sure = np.array([[[0.97, 0.03], [0.7, 0.3]]])
    unsure = np.array([[[0.7, 0.3], [0.7, 0.3]]])
    rule = ExitRule("learned", threshold=0.1, weights=tuple(map(tuple, weights.tolist())))
    assert simulate(np.concatenate([sure, sure[:, -1:]], axis=1), rule).exit_layers[0] == 1
    assert simulate(np.concatenate([unsure, unsure[:, -1:]], axis=1), rule).exit_layers[0] > 1
    u = learned_exit.uncertainty(probs[:, :-1], weights)
    assert u.min() >= 0 and u.max() <= 1


def test_graph_form_equals_numpy_form():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    probs = rng.dirichlet([0.5, 0.5, 0.5], size=(50, 4))
    weights = rng.normal(size=(3, 8))
    expected = learned_exit.uncertainty(probs[:, :-1], weights)
    previous, run, previous_top = np.full(50, np.nan), np.zeros(50, np.int32), np.zeros(50)
    for i in range(3):
        label = probs[:, i].argmax(-1).astype(float)
        run = np.where(label == previous, run + 1, 0).astype(np.int32)
        u, top = learned_exit.layer_uncertainty_tf(
            tf.constant(probs[:, i], tf.float32), tf.constant(previous), tf.constant(run),
            tf.constant(previous_top), tf.constant(weights[i]),
        )
        np.testing.assert_allclose(u.numpy(), expected[:, i], atol=1e-6)
        previous, previous_top = label, top.numpy()


def test_learned_rule_without_weights_is_refused():
    with pytest.raises(UserInputError, match="needs its fitted weights"):
        ExitRule("learned", threshold=0.2).validate(2)
