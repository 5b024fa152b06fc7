import math

import numpy as np
import pytest

from msbert_tf.errors import UserInputError
from msbert_tf.inference.metrics import score


def test_binary_metrics_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    predictions = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    tp, tn, fp, fn = 3, 3, 1, 1
    assert score("accuracy", labels, predictions) == 75.0
    assert score("f1", labels, predictions) == round(100 * 2 * tp / (2 * tp + fp + fn), 2)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert score("matthews", labels, predictions) == round(100 * mcc, 2)


def test_matthews_edge_cases():
    labels = np.array([0, 1, 2, 0, 1, 2])
    assert score("matthews", labels, labels) == 100.0
    assert score("matthews", labels, np.zeros(6, int)) == 0.0  # constant prediction
    assert score("matthews", np.array([0, 1]), np.array([1, 0])) == -100.0


def test_unknown_metric():
    with pytest.raises(UserInputError, match="unknown metric 'bleu'"):
        score("bleu", np.array([0]), np.array([0]))
