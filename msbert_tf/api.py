"""The whole method in a few lines of Python, FastBERT-style.

```python
from msbert_tf import MSBert
model = MSBert("runs/sst2", task="sst2", data_dir="../shared/data/glue")
model.fit()                                   # teacher, then exit heads
model.predict(["a gripping, funny film"])     # label, probabilities, exit layer
model.predict(["a gripping, funny film"], speed=0.5)
```
"""

import dataclasses

from msbert_tf.config import RunConfig
from msbert_tf.errors import UserInputError


class MSBert:
    """A run folder with its model: train it, reload it, classify with early exit.

    Keyword arguments set config fields by name, in whichever section has
    that name (`task`, `data_dir`, `backbone`, `head`, `loss`, ...); a name
    found in several sections (`epochs`) needs a `RunConfig`.
    """

    def __init__(self, output_dir, config=None, **overrides):
        self.output_dir = output_dir
        self.config = config or RunConfig()
        for name, value in overrides.items():
            _set_field(self.config, name, value)
        self._trained = None

    @classmethod
    def load(cls, run_dir):
        from msbert_tf.inference.loading import load_run

        model = cls(run_dir, config=None)
        model._trained = load_run(run_dir)
        model.config = model._trained.config
        return model

    def fit(self, verbose="auto"):
        from msbert_tf.inference.loading import load_run
        from msbert_tf.training.trainer import train

        result = train(self.config, self.output_dir, verbose=verbose)
        self._trained = load_run(result.output_dir)
        return self

    def predict(self, texts, speed=None, uncertainty=None, top_k=None):
        from msbert_tf.inference.predict import default_rule, predict_texts

        if self._trained is None:
            raise UserInputError("this model is not trained: call fit() or MSBert.load(run_dir).")
        one_pair = isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
        if isinstance(texts, str) or (self._trained.task.is_pair and one_pair):
            texts = [texts]
        rule = default_rule(self._trained, speed, uncertainty, top_k)
        return predict_texts(self._trained, texts, rule)


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
