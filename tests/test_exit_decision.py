"""The exit decision is written in numpy for a batch (`ExitRule.sure`) and
for one example an exit at a time (`ExitRule.decider`, the on-device loop's),
and in TF (`graph_sure`) side by side: all agree exit by exit for every rule."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from msbert_tf.inference import learned_exit
from msbert_tf.inference.agreement import agreeing_run, graph_agreeing_run
from msbert_tf.inference.uncertainty import ExitRule, graph_sure


def test_agreeing_run_by_hand_and_in_tf():
    predictions = np.array([[1, 1, 0, 0, 0], [2.0, 2.3, 2.9, 2.8, 4.0]])
    assert agreeing_run(predictions[:1]).tolist() == [[0, 1, 0, 1, 2]]
    assert agreeing_run(predictions[1:], tolerance=0.5).tolist() == [[0, 1, 0, 1, 0]]
    run, previous = tf.zeros([2], tf.int32), tf.constant([np.nan, np.nan], tf.float64)
    for i in range(predictions.shape[1]):
        current = tf.constant(predictions[:, i], tf.float64)
        run = graph_agreeing_run(run, current, previous, tf.constant([0.0, 0.5], tf.float64))
        previous = current
    assert run.numpy().tolist() == [2, 0]


def _rules(probs):
    weights = tuple(map(tuple, learned_exit.fit(probs).tolist()))
    return [ExitRule("entropy", threshold=0.6), ExitRule("topk", threshold=0.5, top_k=2),
            ExitRule("patience", patience=2), ExitRule("learned", weights=weights)]


@pytest.mark.parametrize("index", range(4))
def test_graph_decision_equals_numpy_decision(index):
    rng = np.random.default_rng(index)
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=(200, 5))
    # Some rows repeat their label for a few exits, so patience and the learned run fire.
    probs[:50, 1:3] = probs[:50, :1]
    rule = _rules(probs)[index]
    if rule.kind == "learned":  # its uncertainty's scale is the fit's: a threshold inside it
        rule = dataclasses.replace(rule, threshold=float(np.median(rule.uncertainty(probs[:, :-1]))))
    want = rule.sure(probs[:, :-1])
    state = (tf.fill([200], tf.constant(np.nan, tf.float64)), tf.zeros([200], tf.int32), tf.zeros([200], tf.float64))
    weights = tf.constant(rule.weights or np.zeros((4, 1)), tf.float64)
    got = []
    for layer in range(4):
        sure, state = graph_sure(rule.kind, rule.top_k, tf.constant(probs[:, layer], tf.float32), state,
                                 tf.constant(rule.threshold, tf.float64), rule.patience,
                                 tf.constant(rule.tolerance, tf.float64), weights[layer])
        got.append(sure.numpy())
    np.testing.assert_array_equal(np.stack(got, axis=1), want)
    assert 0 < want.mean() < 1  # both decisions occur
    # A decider per example, fed its exits one at a time.
    stepped = []
    for row in probs[:, :-1]:
        leaves = rule.decider()
        stepped.append([leaves(output) for output in row])
    np.testing.assert_array_equal(np.array(stepped), want)


def test_regression_patience_within_tolerance():
    values = np.array([[[1.0], [1.2], [1.3], [3.0]]])
    rule = ExitRule("patience", patience=2, tolerance=0.25)
    assert rule.sure(values).tolist() == [[False, False, True, False]]
    state = (tf.constant([np.nan], tf.float64), tf.zeros([1], tf.int32), tf.zeros([1], tf.float64))
    got = []
    for layer in range(4):
        sure, state = graph_sure("patience", None, tf.constant(values[:, layer], tf.float32), state, 0.0, 2,
                                 tf.constant(0.25, tf.float64), None)
        got.append(bool(sure.numpy()[0]))
    assert got == [False, False, True, False]
    leaves = rule.decider()
    assert [leaves(value) for value in values[0]] == [False, False, True, False]


def test_plain_python_forms_equal_numpy_and_saturate():
    from msbert_tf.inference.entropy import entropy, entropy_of, top_k_entropy

    rng = np.random.default_rng(5)
    probs = rng.dirichlet([0.2] * 4, size=100)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # log 0 is capped, as numpy's form caps it
    for row in probs:
        assert entropy_of(row.tolist()) == pytest.approx(entropy(row), abs=1e-12)
        assert entropy_of(row.tolist(), 2) == pytest.approx(top_k_entropy(row, 2), abs=1e-12)
    weights = np.random.default_rng(6).normal(size=len(learned_exit.FEATURES) + 1)
    for row in probs[:, :2] / probs[:, :2].sum(axis=1, keepdims=True):
        # After an exit that read [0.9, 0.1]: the run is 1 where this exit's label is also 0.
        got, top = learned_exit.layer_uncertainty(row.tolist(), int(row.argmax() == 0), 0.9, tuple(weights))
        want = learned_exit.uncertainty(np.stack([[[0.9, 0.1]], [row]], axis=1), np.stack([weights, weights]))[0, 1]
        assert (got, top) == (pytest.approx(want, abs=1e-12), row.max())
    # Logits far beyond exp's range saturate to 0 and 1 instead of overflowing.
    for scale, want in ((1e4, 0.0), (-1e4, 1.0)):
        assert learned_exit.layer_uncertainty([0.9, 0.1], 1, 0.8, (scale,) * 8)[0] == want
