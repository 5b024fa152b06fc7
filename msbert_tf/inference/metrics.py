"""Task metrics, in percent with 2 decimals as every report shows them.

```python
score("matthews", np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]))  # 57.74
```
"""

import numpy as np

from msbert_tf.errors import UserInputError


def accuracy(labels, predictions):
    return float(np.mean(labels == predictions))


def f1(labels, predictions):
    """F1 of label 1, the positive class of binary GLUE tasks (MRPC)."""
    true_positive = np.sum((predictions == 1) & (labels == 1))
    predicted, actual = np.sum(predictions == 1), np.sum(labels == 1)
    return float(2 * true_positive / (predicted + actual)) if predicted + actual else 0.0


def matthews(labels, predictions):
    """Matthews correlation (CoLA), multi-class form; 0 when either side is constant."""
    classes = np.union1d(labels, predictions)
    true_counts = np.array([np.sum(labels == k) for k in classes], np.float64)
    predicted_counts = np.array([np.sum(predictions == k) for k in classes], np.float64)
    total, correct = float(len(labels)), float(np.sum(labels == predictions))
    numerator = correct * total - predicted_counts @ true_counts
    denominator = np.sqrt((total**2 - predicted_counts @ predicted_counts) * (total**2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def pearson(labels, predictions):
    """Pearson correlation (STS-B); 0 when either side is constant."""
    labels, predictions = np.asarray(labels, np.float64), np.asarray(predictions, np.float64)
    a, b = labels - labels.mean(), predictions - predictions.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator else 0.0


def _ranks(values):
    """Ranks from 1, ties sharing their mean rank (as Spearman's rho needs)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(group, weights=ranks)
    return sums[group] / counts[group]


def spearman(labels, predictions):
    """Spearman's rank correlation: Pearson's on the ranks."""
    return pearson(_ranks(labels), _ranks(predictions))


METRICS = {"accuracy": accuracy, "f1": f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}


def score(name, labels, predictions):
    if name not in METRICS:
        raise UserInputError(f"unknown metric {name!r}: choose from {', '.join(METRICS)}.")
    return round(100.0 * METRICS[name](np.asarray(labels), np.asarray(predictions)), 2)
