"""Reads of a layer's token rows (B x T x H) that exit heads and the teacher share.

Each has two forms with the same numbers. For one example of static batch
(a LiteRT stage graph), products of constant shape, which XNNPACK runs with
the rest of the stage: it takes no EXPAND_DIMS, no slice that drops an
axis, and no 2-D product whose right-hand side is computed. For any other
batch, element-wise products and sums: TensorFlow's CPU kernels spend
30-80 us on a batched product whatever its size, as much as a small head.

```python
import numpy as np
hidden = np.arange(12, dtype="float32").reshape(1, 3, 4)
first_token(hidden), weighted_sum(np.array([[0.5, 0.5, 0.0]], "float32"), hidden)
```
"""

from keras import ops


def _one_example(hidden):
    return hidden.shape[0] == 1


def first_token(hidden):
    """`hidden[:, 0, :]` ([CLS]): B x H."""
    if _one_example(hidden):
        return ops.slice(ops.reshape(hidden, (-1, hidden.shape[-1])), (0, 0), (1, hidden.shape[-1]))
    return hidden[:, 0, :]


def dot_each(hidden, direction):
    """Each token row's dot product with its example's `direction` (B x H): B x T."""
    if _one_example(hidden):
        return ops.reshape(ops.matmul(ops.reshape(direction, (1, 1, -1)), ops.transpose(hidden, (0, 2, 1))), (1, -1))
    return ops.sum(hidden * ops.expand_dims(direction, 1), axis=-1)


def weighted_sum(weights, hidden):
    """The token rows summed with `weights` (B x T): B x H."""
    if _one_example(hidden):
        return ops.reshape(ops.matmul(ops.reshape(weights, (1, 1, -1)), hidden), (1, -1))
    return ops.sum(hidden * ops.expand_dims(weights, -1), axis=1)
