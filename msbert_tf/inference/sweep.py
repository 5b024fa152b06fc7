"""Accuracy / speed-up trade-off of early exit over a range of thresholds.

Every exit's probabilities are computed once; each threshold is then
replayed by the simulator (identical decisions to the real path, tested).
FLOPs are counted per example at its real length. Wall clock times the real
shrinking-batch path against the full teacher on the same inputs.

```python
points = sweep(classifier, dev_split, [ExitRule("entropy", s) for s in (0, 0.2, 0.4)])
choose_threshold(points, teacher_metric=91.0, max_drop=0.5)
```
"""

import time

import numpy as np
import tensorflow as tf

from msbert_tf.data import pipeline
from msbert_tf.inference import flops
from msbert_tf.inference.early_exit import EarlyExitPredictor, exit_outputs, simulate
from msbert_tf.inference.exit_metrics import exit_logits
from msbert_tf.inference.metrics import score


def flops_speedup(exit_layers, lengths, spec):
    path = sum(flops.path_flops(int(e), int(t), spec) for e, t in zip(exit_layers, lengths))
    full = sum(flops.teacher_flops(int(t), spec) for t in lengths)
    return full / path


def sweep(classifier, split, rules, batch_size=64, metric="accuracy", probs=None):
    """One point per rule; `probs`: every exit's outputs on `split`, when already computed."""
    if probs is None:
        probs = np.asarray(exit_outputs(tf.constant(exit_logits(classifier, split, batch_size))))
    spec = flops.model_spec(classifier)
    lengths = split.lengths
    points = []
    for rule in rules:
        rule.validate(classifier.num_labels)
        result = simulate(probs, rule)
        histogram = np.bincount(result.exit_layers, minlength=classifier.num_layers + 1)[1:]
        points.append(
            {
                "uncertainty": rule.kind,
                "threshold": rule.threshold,
                "top_k": rule.top_k if rule.kind == "topk" else None,
                "patience": rule.patience if rule.kind == "patience" else None,
                "tolerance": rule.tolerance if rule.kind == "patience" and classifier.num_labels == 1 else None,
                "metric": score(metric, split.labels, result.labels),
                "mean_exit_layer": round(float(result.exit_layers.mean()), 3),
                "exit_histogram": histogram.tolist(),
                "flops_speedup": round(flops_speedup(result.exit_layers, lengths, spec), 3),
            }
        )
    return points


def choose_threshold(points, teacher_metric, max_drop):
    """The point with the largest FLOPs speed-up within `max_drop` of the teacher."""
    allowed = [p for p in points if p["metric"] >= teacher_metric - max_drop]
    return max(allowed, key=lambda p: p["flops_speedup"]) if allowed else None


class WallClock:
    """Times the real early-exit path against the full teacher on the same batches.

    Built once per split: the compiled steps are reused by every rule timed.
    """

    def __init__(self, classifier, split, batch_size, max_examples=None):
        self.predictor = EarlyExitPredictor(classifier)
        self.teacher = tf.function(
            lambda x: classifier.teacher_logits(classifier.hidden_states(x)[-1], x["padding_mask"]),
            reduce_retracing=True,
        )
        self.batches = [
            {k: v.numpy() for k, v in x.items()}
            for x, _ in pipeline.eval_dataset(_head(split, max_examples), batch_size)
        ]
        for x in self.batches:  # tracing is not inference
            self.teacher(x)
        self.teacher_seconds = self._time(self.teacher)

    def _time(self, run):
        start = time.perf_counter()
        for x in self.batches:
            run(x)
        return time.perf_counter() - start

    def speedup(self, rule):
        for x in self.batches:
            self.predictor.predict(x, rule)
        return self.teacher_seconds / self._time(lambda x: self.predictor.predict(x, rule))


def _head(split, n):
    if n is None or n >= len(split):
        return split
    return pipeline.EncodedSplit(
        features={k: v[:n] for k, v in split.features.items()},
        labels=split.labels[:n],
        num_truncated=split.num_truncated,
    )
