"""Normalised entropies of exit probabilities, the measure of the entropy
and top-K rules (`uncertainty`) and a feature of the learned one: the numpy
forms (simulator, calibration), the plain-Python form of one exit's few
probabilities (the LiteRT runner's decision after each stage, where numpy's
call overhead on a handful of numbers costs more than the arithmetic) and,
side by side, the TF form of the early-exit graph (predictor and
SavedModel), tested equal.

```python
import numpy as np
import tensorflow as tf
entropy(np.array([0.5, 0.5])), top_k_entropy(np.array([0.7, 0.2, 0.1]), k=2)  # (1.0, 0.76)
```
"""

import math

import numpy as np
import tensorflow as tf

_TINY = 1e-12


def entropy(probs):
    """Normalised entropy of each row of `probs` (... x N), in [0, 1]."""
    probs = np.asarray(probs, np.float64)
    n = probs.shape[-1]
    # At most 1 in exact arithmetic; the cap keeps rounding from lifting a
    # uniform row above threshold 1.
    return np.minimum(-np.sum(probs * np.log(np.maximum(probs, _TINY)), axis=-1) / np.log(n), 1.0)


def entropy_of(values, k=None):
    """`entropy` (or, with `k`, `top_k_entropy`) of one exit's probabilities,
    a list of Python floats, in plain Python."""
    if k is not None:
        values = sorted(values, reverse=True)[:k]
        total = max(sum(values), _TINY)
        values = [v / total for v in values]
    return min(-sum(v * math.log(max(v, _TINY)) for v in values) / math.log(len(values)), 1.0)


def top_k_entropy(probs, k):
    """Entropy of the renormalised K largest probabilities, over log K."""
    probs = np.asarray(probs, np.float64)
    top = -np.sort(-probs, axis=-1)[..., :k]
    return entropy(top / np.maximum(top.sum(axis=-1, keepdims=True), _TINY))


def graph_uncertainty(probs, kind, top_k):
    """`entropy` (kind "entropy") or `top_k_entropy` (kind "topk") in TF ops,
    in float64 as the numpy forms."""
    p = tf.cast(probs, tf.float64)
    if kind == "topk":
        p = tf.math.top_k(p, k=top_k).values
        p = p / tf.maximum(tf.reduce_sum(p, axis=-1, keepdims=True), _TINY)
    n = tf.cast(tf.shape(p)[-1], tf.float64)
    # Capped at 1 as the numpy form is: rounding must not make a uniform row
    # miss threshold 1 on one side only.
    return tf.minimum(-tf.reduce_sum(p * tf.math.log(tf.maximum(p, _TINY)), axis=-1) / tf.math.log(n), 1.0)
