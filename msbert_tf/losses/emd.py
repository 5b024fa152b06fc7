"""Earth Mover's Distance between student and teacher layers.

Students `i` and teacher layers `j` are piles of mass `a_i`, `b_j` (each
summing to 1). The plan `F*` minimising `sum F_ij C_ij` under those
marginals is held constant for the gradient, as in BERT-EMD, and the loss
is `sum F*_ij C_ij / sum F*_ij`. Two solvers share that interface:

- `exact`: POT's network simplex (`ot.emd`), run on the host through
  `tf.py_function`; not usable under XLA or a distribution strategy.
- `sinkhorn`: log-domain entropic Sinkhorn in TensorFlow ops; runs inside the
  compiled graph, with XLA and under `tf.distribute`.

```python
import tensorflow as tf
cost = tf.random.uniform((5, 6))
a, b = tf.fill((5,), 1 / 5), tf.fill((6,), 1 / 6)
transport_loss(cost, a, b, solver="exact")
transport_loss(cost, a, b, solver="sinkhorn", epsilon=1e-3, iterations=2000)
```
"""

import numpy as np
import ot
import tensorflow as tf


def exact_plan(cost, source_mass, target_mass):
    """Optimal plan by network simplex (POT), as a float32 tensor."""

    def solve(c, a, b):
        a = a.numpy().astype(np.float64)
        b = b.numpy().astype(np.float64)
        # ot.emd requires equal totals to float64 precision.
        return ot.emd(a / a.sum(), b / b.sum(), c.numpy().astype(np.float64)).astype(np.float32)

    plan = tf.py_function(solve, [cost, source_mass, target_mass], Tout=tf.float32)
    plan.set_shape(cost.shape)
    return plan


def sinkhorn_plan(cost, source_mass, target_mass, epsilon=0.01, iterations=200):
    """Entropic plan by log-domain Sinkhorn.

    `epsilon` is relative to the cost matrix's largest entry, so the same
    value suits costs of any scale; as it goes to 0 the plan goes to the
    exact one (more iterations are then needed).
    """
    cost = tf.convert_to_tensor(cost, tf.float32)
    scale = tf.maximum(tf.reduce_max(tf.abs(cost)), 1e-12)
    kernel = -cost / (scale * epsilon)
    log_a = tf.math.log(source_mass / tf.reduce_sum(source_mass))
    log_b = tf.math.log(target_mass / tf.reduce_sum(target_mass))

    def body(step, f, g):
        f = log_a - tf.reduce_logsumexp(kernel + g[None, :], axis=1)
        g = log_b - tf.reduce_logsumexp(kernel + f[:, None], axis=0)
        return step + 1, f, g

    _, f, g = tf.while_loop(
        lambda step, f, g: step < iterations,
        body,
        (tf.constant(0), tf.zeros_like(log_a), tf.zeros_like(log_b)),
    )
    return tf.exp(kernel + f[:, None] + g[None, :])


def transport_loss(cost, source_mass, target_mass, solver="sinkhorn", epsilon=0.01, iterations=200):
    """`sum F* C / sum F*` with the plan `F*` held constant. Returns (loss, plan)."""
    if solver == "exact":
        plan = exact_plan(cost, source_mass, target_mass)
    else:
        plan = sinkhorn_plan(cost, source_mass, target_mass, epsilon, iterations)
    plan = tf.stop_gradient(plan)
    return tf.reduce_sum(plan * cost) / tf.reduce_sum(plan), plan
