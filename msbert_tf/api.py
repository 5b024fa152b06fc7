"""The whole method in a few lines of Python, FastBERT-style.

```python
from msbert_tf import MSBert
model = MSBert.from_preset("sst2", "runs/sst2", data_dir="../shared/data/glue")
model.fit()                                   # teacher, exit heads, certified threshold
model.predict(["a gripping, funny film"])     # label, probabilities, exit layer
model.predict(["a gripping, funny film"], threshold=0.5)
model.evaluate("../shared/data/glue/SST-2/dev.tsv", timing_examples=0)["chosen"]
model.export("runs/sst2/export", formats=("tflite",))
model.distill("runs/sst2_kl", loss="kl")      # stage 2 again on the same teacher
```
"""

import copy
import os

from msbert_tf.config import RunConfig
from msbert_tf.errors import UserInputError
from msbert_tf.inference.risk_control import DEFAULT_CONFIDENCE, DEFAULT_MAX_RISK, DEFAULT_RISK


class MSBert:
    """A run folder with its model: train it, reload it, classify with early exit.

    Keyword arguments set config fields by the names the CLI's flags have
    (`msbert_tf.config.setting_paths()`): a field's own name (`task`,
    `data_dir`, `backbone`, `head`, `loss`, ...), or, for a name several
    sections share (`epochs`), the dotted one, in a dict:
    `MSBert(dir, **{"distill.epochs": 1})`; values are coerced and checked as
    a config file's are. A folder that
    already holds a run (the CLI's, or an earlier fit's) continues with that
    run's config, so a `fit()` there finishes or reuses it.
    """

    def __init__(self, output_dir, config=None, **overrides):
        self.output_dir = output_dir
        if config is None and os.path.exists(os.path.join(output_dir, "config.json")):
            # A folder the CLI (or an earlier fit) started: continue with its config.
            config = RunConfig.from_file(os.path.join(output_dir, "config.json"))
        # A copy: the caller's config stays as it was. A folder's own config
        # is taken as saved (a run is loaded even if today's checks are stricter).
        config = config or RunConfig()
        self.config = config.replace(**overrides) if overrides else copy.deepcopy(config)
        self._trained = None
        # The certified threshold's record (exit_threshold.json), once there is one.
        self.calibration = None

    @classmethod
    def from_preset(cls, preset, output_dir, **overrides):
        """A run of a preset (`"sst2"`: `configs/sst2.json`; or a JSON file's
        path) with keyword overrides, as `--config=sst2` on the command line."""
        return cls(output_dir, config=RunConfig.from_preset(preset), **overrides)

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

    def distill(self, output_dir, verbose="auto", **overrides):
        """Stage 2 again on this run's fine-tuned teacher, with other settings
        (`loss="kl"`, `**{"distill.seed": 2}`, `head_dim=64`), in a new run
        folder: the teacher is copied, not trained again. Returns that run,
        fitted and calibrated. Settings the teacher depends on (data,
        backbone, `seed`, `teacher.*`) are refused: they would need a new
        teacher."""
        self._require_trained()
        if "teacher_from" in overrides:
            raise UserInputError("distill() sets teacher_from to this run: drop teacher_from.")
        config = self.config.replace(teacher_from=os.path.abspath(self.output_dir), **overrides)
        return MSBert(output_dir, config=config).fit(verbose=verbose)

    def calibrate(self, data_file=None, risk=DEFAULT_RISK, max_risk=DEFAULT_MAX_RISK,
                  confidence=DEFAULT_CONFIDENCE, uncertainty=None, top_k=2, final_exits=None):
        """Certifies the exit threshold on rows the model never trained on
        (default: the rows training held out) and makes it the default of
        `predict` and export; returns the record (`record["summary"]` says
        it in words). `final_exits`: the final predictions tried, each the
        mean of the last k exits (1: the last exit alone). `uncertainty` and
        `final_exits`: default, the run config's (the SST-2 preset's: learned,
        and the mean of the last 4 alone)."""
        from msbert_tf.inference.calibration import calibrate_run

        self._require_trained()
        self.calibration = calibrate_run(
            data_file=data_file, risk=risk, max_risk=max_risk, confidence=confidence,
            uncertainty=uncertainty, top_k=top_k, trained=self._trained, final_exits=final_exits,
        )
        return self.calibration

    def predict(self, texts, threshold=None, uncertainty=None, top_k=None, speed=None, patience=None):
        """Labels, probabilities and exit layers of `texts` (strings, or
        `(text, text_pair)` tuples for a pair task). `threshold` in [0, 1]: 0
        runs every layer, 1 exits at the first; default, the run's certified
        one. `speed` is its name of earlier versions. `patience`: the patience
        rule's count of agreeing exits."""
        from msbert_tf.inference.predict import default_rule, predict_texts

        self._require_trained()
        one_pair = isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts)
        if isinstance(texts, str) or (self._trained.task.is_pair and one_pair):
            texts = [texts]
        rule = default_rule(self._trained, _threshold(threshold, speed), uncertainty, top_k, patience)
        return predict_texts(self._trained, texts, rule)


    def evaluate(self, data_file, uncertainty=None, thresholds=None, top_k=2, tolerances=None, max_drop=0.5,
                 max_examples=None, timing_examples=200, output=None, speeds=None):
        """Early exit on a labelled file: per-exit metrics, the threshold sweep
        (FLOPs and wall clock), the dev-style pick within `max_drop` points
        (uncertified) and the oracle; as `python -m msbert_tf.evaluate`.
        `output`: also write report JSON, Markdown and plot there; `speeds`:
        the name of `thresholds` in earlier versions."""
        from msbert_tf import report
        from msbert_tf.inference.evaluation import evaluate_file
        from msbert_tf.run_dir import writable_folder

        self._require_trained()
        if output:
            writable_folder(os.path.dirname(os.path.abspath(output)), "output")
        result = evaluate_file(
            self._trained, data_file, uncertainty=uncertainty, thresholds=_threshold(thresholds, speeds, "thresholds", "speeds"), top_k=top_k, tolerances=tolerances,
            max_drop=max_drop, max_examples=max_examples, timing_examples=timing_examples,
        )
        if output:
            folder, name = os.path.split(os.path.abspath(output))
            report.write_report(folder, result, prefix=os.path.splitext(name)[0])
        return result

    def export(self, output_dir=None, formats=("tflite", "saved_model"), quantize=("none",), max_seq_length=None,
               threshold=None, uncertainty=None, top_k=None, speed=None, patience=None, representative_file=None):
        """The LiteRT bundles and the SavedModel (default: RUN/export), with the
        run's certified threshold unless `threshold` (earlier: `speed`), or
        for the patience rule `patience`, is given; their paths. `quantize`
        "int8" calibrates its activations on the run's training rows, or on
        `representative_file` (one example per line; a pair task's two texts
        tab-separated)."""
        from msbert_tf.data import readers
        from msbert_tf.export.bundle import export_run
        from msbert_tf.inference.predict import default_rule

        self._require_trained()
        rule = default_rule(self._trained, _threshold(threshold, speed), uncertainty, top_k, patience)
        output_dir = output_dir or os.path.join(self.output_dir, "export")
        representative = representative_file and readers.read_texts(self._trained.task, representative_file)
        return export_run(self._trained, output_dir, tuple(formats), tuple(quantize), max_seq_length, rule,
                          representative)

    def _require_trained(self):
        if self._trained is None:
            raise UserInputError("this model is not trained: call fit() or MSBert.load(run_dir).")


def _threshold(value, alias, name="threshold", alias_name="speed"):
    """`value`, or `alias` (its name of earlier versions); not both."""
    if alias is not None and value is not None:
        raise UserInputError(f"{alias_name} is the earlier name of {name}: give one of them.")
    return value if alias is None else alias
