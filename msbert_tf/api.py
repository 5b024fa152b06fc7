"""The whole method in a few lines of Python, FastBERT-style.

```python
from msbert_tf import MSBert
model = MSBert("runs/sst2", task="sst2", data_dir="../shared/data/glue")
model.fit()                                   # teacher, exit heads, certified threshold
model.predict(["a gripping, funny film"])     # label, probabilities, exit layer
model.predict(["a gripping, funny film"], speed=0.5)
```
"""

import dataclasses
import os

from msbert_tf.config import RunConfig
from msbert_tf.errors import UserInputError
from msbert_tf.inference.risk_control import DEFAULT_CONFIDENCE, DEFAULT_MAX_RISK, DEFAULT_RISK


class MSBert:
    """A run folder with its model: train it, reload it, classify with early exit.

    Keyword arguments set config fields by name, in whichever section has
    that name (`task`, `data_dir`, `backbone`, `head`, `loss`, ...); a name
    found in several sections (`epochs`) needs a `RunConfig`. A folder that
    already holds a run (the CLI's, or an earlier fit's) continues with that
    run's config, so a `fit()` there finishes or reuses it.
    """

    def __init__(self, output_dir, config=None, **overrides):
        self.output_dir = output_dir
        if config is None and os.path.exists(os.path.join(output_dir, "config.json")):
            # A folder the CLI (or an earlier fit) started: continue with its config.
            config = RunConfig.from_file(os.path.join(output_dir, "config.json"))
        self.config = config or RunConfig()
        for name, value in overrides.items():
            _set_field(self.config, name, value)
        self._trained = None
        # The certified threshold's record (exit_threshold.json), once there is one.
        self.calibration = None

    @classmethod
    def load(cls, run_dir):
        from msbert_tf.inference.loading import load_run

        model = cls(run_dir, config=None)
        model._trained = load_run(run_dir)
        model.config = model._trained.config
        model.calibration = model._trained.run.load_threshold() or None
        return model

    def fit(self, verbose="auto"):
        """Both training stages, then the certified exit threshold (on the
        rows training held out) that `predict` uses by default."""
        from msbert_tf.inference.calibration import calibrate_after_training
        from msbert_tf.inference.loading import load_run
        from msbert_tf.training.trainer import train

        result = train(self.config, self.output_dir, verbose=verbose)
        self._trained = load_run(result.output_dir)
        if result.chief:
            self.calibration = calibrate_after_training(self._trained)
        return self

    def calibrate(self, data_file=None, risk=DEFAULT_RISK, max_risk=DEFAULT_MAX_RISK,
                  confidence=DEFAULT_CONFIDENCE, uncertainty=None, top_k=2):
        """Certifies the exit threshold on rows the model never trained on
        (default: the rows training held out) and makes it the default of
        `predict` and export; returns the record (`record["summary"]` says
        it in words)."""
        from msbert_tf.inference.calibration import calibrate_run

        self._require_trained()
        self.calibration = calibrate_run(
            data_file=data_file, risk=risk, max_risk=max_risk, confidence=confidence,
            uncertainty=uncertainty, top_k=top_k, trained=self._trained,
        )
        return self.calibration

    def predict(self, texts, speed=None, uncertainty=None, top_k=None):
        from msbert_tf.inference.predict import default_rule, predict_texts

        self._require_trained()
        one_pair = isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
        if isinstance(texts, str) or (self._trained.task.is_pair and one_pair):
            texts = [texts]
        rule = default_rule(self._trained, speed, uncertainty, top_k)
        return predict_texts(self._trained, texts, rule)


    def _require_trained(self):
        if self._trained is None:
            raise UserInputError("this model is not trained: call fit() or MSBert.load(run_dir).")


def _set_field(config, name, value):
    owners = [
        section
        for section in (config, config.data, config.model, config.teacher, config.distill)
        if name in {f.name for f in dataclasses.fields(section)}
    ]
    if len(owners) != 1:
        where = "no" if not owners else "several"
        raise UserInputError(f"{name!r} names {where} config field(s); pass a RunConfig instead.")
    setattr(owners[0], name, value)
