"""Exit rules: when is an exit's prediction sure enough to stop?

- `entropy` (FastBERT): `u = -sum_k p_k log p_k / log N`, in [0, 1].
- `topk` (MS-BERT): keep the K largest probabilities, renormalise them to
  `q`, `u = -sum q log q / log K`. It ignores the long tail of small
  probabilities that inflates plain entropy when there are many classes;
  with `K = N` it equals `entropy`.
- `learned`: one minus a per-exit logistic model's probability that the
  exit agrees with the full model (`learned_exit`).
- `patience` (PABEE): exit once the prediction has stayed the same for
  `patience` consecutive exits (no probabilities involved). For regression
  (one output) "the same" means within `tolerance` of the previous exit's
  value; it is the only rule there, as entropy needs class probabilities.

```python
import numpy as np
p = np.array([[0.7, 0.1, 0.1, 0.1]])
entropy(p), top_k_entropy(p, k=2)  # (0.68, 0.54)
```
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from msbert_tf.errors import UserInputError
from msbert_tf.inference import learned_exit
from msbert_tf.inference.agreement import agreeing_run, graph_agreeing_run
from msbert_tf.inference.entropy import entropy, entropy_of, graph_uncertainty, top_k_entropy  # noqa: F401 - re-exported

RULES = ("entropy", "topk", "patience", "learned")
# Regression (STS-B, scores 0-5): how close two exits' values must be to agree.
DEFAULT_TOLERANCES = (0.1, 0.2, 0.3, 0.5)


def default_uncertainty(task):
    """Entropy for classification; patience for regression, its only rule."""
    return "patience" if task.regression else "entropy"
@dataclasses.dataclass(frozen=True)
class ExitRule:
    """An exit rule and its threshold.

    `threshold` is the uncertainty threshold in [0, 1] for `entropy`/`topk`
    (0 runs the whole teacher, 1 always exits at layer 1); for `patience` it
    is unused and `patience` (>= 1) counts agreeing consecutive exits;
    `tolerance` is how far two regression outputs may differ and agree.
    `final_exits`: how many of the last exits the final prediction (of an
    example that reaches the last layer) averages; 1 is the last exit alone.
    They are all computed on the way there, so the mean costs nothing, and
    early exits agree with it more often than with the last exit alone.
    """

    kind: str = "entropy"
    threshold: float = 0.0
    top_k: int = 2
    patience: int = 2
    tolerance: float = 0.0
    # `learned`: (L - 1) x (F + 1) logistic coefficients (`learned_exit`).
    weights: tuple = None
    final_exits: int = 1

    def validate(self, num_labels):
        if self.kind not in RULES:
            raise UserInputError(f"uncertainty {self.kind!r} is not one of {', '.join(RULES)}.")
        if num_labels == 1 and self.kind != "patience":
            raise UserInputError(
                f"a regression task exits by the patience rule (--uncertainty=patience; "
                f"evaluate sweeps --tolerances): {self.kind} needs class probabilities."
            )
        if not (self.tolerance >= 0.0 and np.isfinite(self.tolerance)):
            raise UserInputError(f"tolerance must be a finite number >= 0, got {self.tolerance}.")
        if not 0.0 <= self.threshold <= 1.0 or np.isnan(self.threshold):
            raise UserInputError(
                f"the exit threshold must be in [0, 1], got {self.threshold}: "
                "0 runs every layer, 1 exits at the first."
            )
        if self.kind == "topk" and not 2 <= self.top_k <= num_labels:
            raise UserInputError(
                f"top_k must be between 2 and the number of labels ({num_labels}), got {self.top_k}."
            )
        if self.kind == "learned" and self.weights is None:
            raise UserInputError(
                "the learned rule needs its fitted weights (RUN/exit_model.json): "
                "`python -m msbert_tf.calibrate --uncertainty=learned` fits them."
            )
        if int(self.final_exits) != self.final_exits or self.final_exits < 1:
            raise UserInputError(
                f"final_exits must be a whole number >= 1 (1: the last exit alone), got {self.final_exits}."
            )
        if self.kind == "patience" and self.patience < 1:
            raise UserInputError(f"patience must be at least 1, got {self.patience}.")
        return self

    def sure(self, outputs):
        """The exit decision: B x L' outputs of exits 1..L' (probabilities,
        or B x L' x 1 regression values) -> B x L', whether each exit is sure
        enough to stop at, from the exits up to it. The last layer is the
        caller's to stop at. `graph_sure` is its TF form, one exit at a time."""
        outputs = np.asarray(outputs, np.float64)
        if self.kind == "patience":
            predictions = outputs[..., 0] if outputs.shape[-1] == 1 else outputs.argmax(axis=-1)
            return agreeing_run(predictions, self.tolerance) >= self.patience
        return self.uncertainty(outputs) <= self.threshold

    def decider(self):
        """The decision an on-device loop makes after each stage, for one
        example: a function of its newest exit's output (N values) -> whether
        to leave there. It carries what the patience and learned rules read of
        the exits before (the agreeing run, the last label and top
        probability), as `graph_sure` does in TF, rather than reading every
        exit again after each stage; `sure` is its batch form (tested equal).
        A new example takes a new decider."""
        # Plain Python on each exit's few numbers: numpy's call overhead on them
        # costs more than the arithmetic, after every stage of every example.
        threshold = self.threshold
        if self.kind in ("entropy", "topk"):
            k = self.top_k if self.kind == "topk" else None
            return lambda output: entropy_of(np.ravel(output).tolist(), k) <= threshold
        tolerance = self.tolerance if self.kind == "patience" else 0.0
        state = {"exit": 0, "previous": math.nan, "run": 0, "top": 0.0}

        def decide(output):
            p = np.ravel(output).tolist()
            current = p[0] if len(p) == 1 else float(max(range(len(p)), key=p.__getitem__))
            # NaN before the first exit: it agrees with nothing.
            state["run"] = state["run"] + 1 if abs(current - state["previous"]) <= tolerance else 0
            state["previous"] = current
            if self.kind == "patience":
                return state["run"] >= self.patience
            u, state["top"] = learned_exit.layer_uncertainty(p, state["run"], state["top"], self.weights[state["exit"]])
            state["exit"] += 1
            return u <= threshold

        return decide

    def uncertainty(self, probs):
        if self.kind == "learned":
            return learned_exit.uncertainty(probs, self.weights)
        if self.kind == "topk":
            return top_k_entropy(probs, self.top_k)
        return entropy(probs)


def graph_sure(kind, top_k, outputs, state, threshold, patience, tolerance, weights):
    """`ExitRule.sure` of one exit in TF ops, for the early-exit graph:
    `outputs` B x N of this exit; `state` (previous prediction, float64, NaN
    before the first exit; agreeing run, int32; previous top probability,
    float64) carried from the exit before; `weights` this exit's row of the
    learned rule's. The rule's settings are tensors, `kind` and `top_k` not.
    Returns (sure, state after this exit)."""
    previous, run, previous_top = state
    if kind in ("entropy", "topk"):
        return graph_uncertainty(outputs, kind, top_k) <= threshold, state
    regression = outputs.shape[-1] == 1
    current = tf.cast(outputs[:, 0] if regression else tf.argmax(outputs, axis=-1), tf.float64)
    if kind == "patience":
        run = graph_agreeing_run(run, current, previous, tolerance)
        return run >= patience, (current, run, previous_top)
    run = graph_agreeing_run(run, current, previous)
    u, top = learned_exit.layer_uncertainty_tf(outputs, previous, run, previous_top, weights)
    return u <= threshold, (current, run, top)
