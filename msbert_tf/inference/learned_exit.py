"""The `learned` exit rule: per exit, a logistic model of "this exit's label
equals the full model's", fitted without labels on training rows.

Features of exit l use exits 1..l only (what the real path has seen when it
decides): the exit's top probability, normalised entropy and margin
(top1 - top2); whether its label equals the previous exit's, how many
exits in a row have agreed so far (PABEE's signal), the previous exit's top
probability, and top probability x agreement. The uncertainty is
`1 - P(agree)`, in [0, 1], so the rule's threshold and its
calibration are those of `entropy`. The numpy and TF forms stand side by
side here (tested equal).

```python
import numpy as np
probs = np.random.default_rng(0).dirichlet([1, 1], size=(100, 6))  # B x L x N
weights = fit(probs)                     # (L - 1) x (F + 1)
uncertainty(probs[:, :-1], weights)      # B x (L - 1), in [0, 1]
```
"""

import math

import numpy as np
import tensorflow as tf

from msbert_tf.inference.agreement import agreeing_run
from msbert_tf.inference.entropy import entropy, entropy_of, graph_uncertainty

FEATURES = ("top_probability", "entropy", "margin", "agrees_with_previous", "agreeing_run",
            "previous_top_probability", "top_probability_x_agrees")


def features(probs):
    """B x L' x N exit probabilities -> B x L' x F features (numpy)."""
    p = np.asarray(probs, np.float64)
    top = -np.sort(-p, axis=-1)
    top1, margin = top[..., 0], top[..., 0] - top[..., 1]
    run = agreeing_run(p.argmax(axis=-1))
    agree = (run > 0).astype(np.float64)
    previous = np.zeros_like(top1)
    previous[:, 1:] = top1[:, :-1]
    return np.stack([top1, entropy(p), margin, agree, run, previous, top1 * agree], axis=-1)


def uncertainty(probs, weights):
    """1 - P(agree with the full model) of each exit of `probs` (B x L' x N)."""
    w = np.asarray(weights, np.float64)[: np.shape(probs)[1]]
    logits = np.einsum("blf,lf->bl", features(probs), w[:, :-1]) + w[:, -1]
    return 1.0 / (1.0 + np.exp(logits))


def layer_uncertainty(p, run, previous_top, weights):
    """`uncertainty` of one example's newest exit, from what the exits before
    it leave, in plain Python (the on-device loop's, a few floats at a time;
    `layer_uncertainty_tf` is its TF form): `p` its N probabilities (a list of
    floats), the agreeing run ending at it, the previous exit's top
    probability (0 before the first) and this exit's row of weights. Returns
    (uncertainty, top probability)."""
    ordered = sorted(p, reverse=True)
    top, agree = ordered[0], float(run > 0)
    f = (top, entropy_of(p), top - ordered[1], agree, float(run), previous_top, top * agree)
    z = sum(x * w for x, w in zip(f, weights)) + weights[-1]
    # 1 / (1 + e^z), written so that a large |z| neither overflows nor loses the small side.
    if z > 0:
        e = math.exp(-z)
        return e / (1.0 + e), top
    return 1.0 / (1.0 + math.exp(z)), top


def layer_uncertainty_tf(outputs, previous_label, run, previous_top, weights):
    """`uncertainty` of one exit in TF ops: `outputs` B x N of this exit, the
    previous exit's label (NaN before the first), the agreeing run so far
    after this exit, the previous top probability (0 before the first), and
    this exit's row of weights."""
    p = tf.cast(outputs, tf.float64)
    top = tf.math.top_k(p, k=2).values
    top1 = top[:, 0]
    label = tf.cast(tf.argmax(p, axis=-1), tf.float64)
    agree = tf.cast(tf.equal(label, previous_label), tf.float64)
    ent = graph_uncertainty(p, "entropy", None)
    f = tf.stack([top1, ent, top1 - top[:, 1], agree, tf.cast(run, tf.float64), previous_top, top1 * agree], axis=-1)
    logits = tf.linalg.matvec(f, weights[:-1]) + weights[-1]
    return 1.0 / (1.0 + tf.exp(logits)), top1


def fit(probs, l2=1e-2, iterations=30):
    """Weights ((L - 1) x (F + 1), bias last) of each exit's logistic model,
    fitted by Newton's method on every exit's outputs `probs` (B x L x N):
    the target is the exit's label equal to the last exit's. No gold labels."""
    probs = np.asarray(probs, np.float64)
    x_all = features(probs[:, :-1])
    labels = probs.argmax(axis=-1)
    return np.asarray([logistic(x_all[:, i], (labels[:, i] == labels[:, -1]).astype(np.float64), l2, iterations)
                       for i in range(probs.shape[1] - 1)])


def logistic(x, y, l2=1e-2, iterations=30):
    """Weights (F + 1, bias last) of an L2-penalised logistic regression of
    `y` (0/1) on `x` (B x F), by Newton's method."""
    # Standardised for the solver, folded back into the weights after.
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = l2 * len(x) * np.diag([1.0] * (z.shape[1] - 1) + [0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty + 1e-9 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return np.append(w[:-1] / scale, w[-1] - np.sum(w[:-1] * mean / scale))
