"""The task's metrics for every exit on a labelled split.

```python
metrics = exit_metrics(classifier, dev_split, batch_size=64, metrics=("accuracy", "f1"))
metrics["teacher"], metrics["exits"]  # the first metric, of C_T and of exits 1..L
metrics["all"]["f1"]                  # every metric, exits 1..L
```
"""

import numpy as np

from msbert_tf.data import pipeline
from msbert_tf.inference.early_exit import predictions_of
from msbert_tf.inference.metrics import score


def exit_logits(classifier, split, batch_size):
    """B x L x N logits of every exit, in the split's row order."""
    dataset = pipeline.eval_dataset(split, batch_size).map(lambda x, y: x)
    return np.concatenate([np.asarray(classifier(x)) for x in dataset])


def exit_metrics(classifier, split, batch_size, metrics=("accuracy",), logits=None):
    """The first of `metrics` drives sweeps and threshold choice; all are
    reported. `logits`: the split's `exit_logits`, when already computed."""
    logits = exit_logits(classifier, split, batch_size) if logits is None else logits
    predictions = predictions_of(logits)
    every = {
        name: [score(name, split.labels, predictions[:, i]) for i in range(predictions.shape[1])]
        for name in metrics
    }
    primary = every[metrics[0]]
    return {"metric": metrics[0], "teacher": primary[-1], "exits": primary, "all": every}
