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


def exit_metrics(classifier, split, batch_size):
    logits = exit_logits(classifier, split, batch_size)
    correct = logits.argmax(axis=-1) == split.labels[:, None]
    per_exit = [round(100.0 * float(c), 2) for c in correct.mean(axis=0)]
    return {"metric": "accuracy", "teacher": per_exit[-1], "exits": per_exit}
