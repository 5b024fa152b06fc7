"""PABEE's signal: how many exits in a row have agreed with the one before.

The patience rule exits on it and the learned rule reads it as a feature;
the numpy form (simulator, calibration, LiteRT runner) and the TF step of
the early-exit graph stand side by side here (tested equal). Classes agree
when equal; a regression's values when within `tolerance`.

```python
import numpy as np
agreeing_run(np.array([[1, 1, 0, 0, 0]]))  # [[0, 1, 0, 1, 2]]
```
"""

import numpy as np
import tensorflow as tf


def agreeing_run(predictions, tolerance=0.0):
    """B x L predictions -> B x L: the agreeing run ending at each exit (0 at the first)."""
    predictions = np.asarray(predictions, np.float64)
    run = np.zeros(predictions.shape)
    for i in range(1, predictions.shape[1]):
        same = np.abs(predictions[:, i] - predictions[:, i - 1]) <= tolerance
        run[:, i] = (run[:, i - 1] + 1) * same
    return run


def graph_agreeing_run(run, current, previous, tolerance=0.0):
    """The run after one more exit, in TF ops: `current` and `previous` are
    float64 predictions (`previous` NaN before the first exit: it agrees
    with nothing), `run` the int32 run so far."""
    return tf.where(tf.abs(current - previous) <= tolerance, run + 1, 0)
