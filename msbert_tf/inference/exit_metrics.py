"""The task metric of every exit on a labelled split.

```python
metrics = exit_metrics(classifier, dev_split, batch_size=64)
metrics["teacher"], metrics["exits"]  # accuracy of C_T, and of exits 1..L
```
"""

import numpy as np

from msbert_tf.data import pipeline


def exit_logits(classifier, split, batch_size):
    """B x L x N logits of every exit, in the split's row order."""
    dataset = pipeline.eval_dataset(split, batch_size).map(lambda x, y: x)
    return np.concatenate([np.asarray(classifier(x)) for x in dataset])


def accuracy(labels, predictions):
    """Percent correct, rounded to 2 decimals as every report shows it."""
    return round(100.0 * float(np.mean(labels == predictions)), 2)


def exit_metrics(classifier, split, batch_size):
    predictions = exit_logits(classifier, split, batch_size).argmax(axis=-1)
    per_exit = [accuracy(split.labels, predictions[:, i]) for i in range(predictions.shape[1])]
    return {"metric": "accuracy", "teacher": per_exit[-1], "exits": per_exit}
