"""Task registry: where each task's rows live and what its labels are.

A task is a `TaskSpec`; adding a GLUE-style task is one entry in `TASKS`.

```python
from msbert_tf.data.tasks import get_task
get_task("sst2").label_names  # ("0", "1")
```
"""

import dataclasses
from typing import Optional

from msbert_tf.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    # Folder under `--data_dir` and file names, in the GLUE download layout.
    glue_dir: str
    train_file: str
    dev_file: str
    # Column names in the TSV header for the first (and second) text.
    text_column: str
    label_column: str
    label_names: tuple
    text_pair_column: Optional[str] = None
    # TFDS dataset and the feature names of its examples.
    tfds_name: Optional[str] = None
    tfds_text_key: Optional[str] = None
    tfds_text_pair_key: Optional[str] = None
    tfds_dev_split: str = "validation"
    tfds_label_key: str = "label"
    # Column names of a file without a header row (CoLA); None: the file has one.
    header: Optional[tuple] = None
    # `glue_tsv`, `trec` / `trec_fine` (`COARSE:fine question` lines; the
    # label is the coarse part / the whole `COARSE:fine`) or `custom` (CSV / TSV / JSON Lines by extension, see readers).
    file_format: str = "glue_tsv"
    # Training rows with a label outside the set are skipped with a warning
    # naming the line, not refused: only for a file known to carry a corrupt
    # label (TREC's train_5500.label, line 4451: `NUM:How count many ...`).
    skip_unknown_train_labels: bool = False
    # Reported per exit; the first one drives sweeps and the threshold choice.
    metrics: tuple = ("accuracy",)
    # A real-valued target (STS-B): one output, squared-error losses, and
    # exits by the patience rule with a tolerance (entropy has no meaning).
    regression: bool = False

    @property
    def is_pair(self):
        """Examples are two texts, packed by the tokenizer with segment ids."""
        return bool(self.text_pair_column)

    @property
    def num_labels(self):
        """Outputs of every exit: the number of classes, or 1 for regression."""
        return 1 if self.regression else len(self.label_names)


TASKS = {
    "sst2": TaskSpec(
        name="sst2",
        glue_dir="SST-2",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="sentence",
        label_column="label",
        label_names=("0", "1"),
        tfds_name="glue/sst2",
        tfds_text_key="sentence",
    ),
    "cola": TaskSpec(
        name="cola",
        glue_dir="CoLA",
        train_file="train.tsv",
        dev_file="dev.tsv",
        header=("source", "label", "original_mark", "sentence"),
        text_column="sentence",
        label_column="label",
        label_names=("0", "1"),
        tfds_name="glue/cola",
        tfds_text_key="sentence",
        metrics=("matthews", "accuracy"),
    ),
    "mrpc": TaskSpec(
        name="mrpc",
        glue_dir="MRPC",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="#1 String",
        text_pair_column="#2 String",
        label_column="Quality",
        label_names=("0", "1"),
        tfds_name="glue/mrpc",
        tfds_text_key="sentence1",
        tfds_text_pair_key="sentence2",
        metrics=("accuracy", "f1"),
    ),
    "rte": TaskSpec(
        name="rte",
        glue_dir="RTE",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="label",
        label_names=("entailment", "not_entailment"),
        tfds_name="glue/rte",
        tfds_text_key="sentence1",
        tfds_text_pair_key="sentence2",
    ),
    "stsb": TaskSpec(
        name="stsb",
        glue_dir="STS-B",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="score",
        label_names=("score",),
        tfds_name="glue/stsb",
        tfds_text_key="sentence1",
        tfds_text_pair_key="sentence2",
        metrics=("pearson", "spearman"),
        regression=True,
    ),
    # Registered for TFDS or a full GLUE download; not in ../shared/data.
    "qnli": TaskSpec(
        name="qnli",
        glue_dir="QNLI",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="question",
        text_pair_column="sentence",
        label_column="label",
        label_names=("entailment", "not_entailment"),
        tfds_name="glue/qnli",
        tfds_text_key="question",
        tfds_text_pair_key="sentence",
    ),
    "qqp": TaskSpec(
        name="qqp",
        glue_dir="QQP",
        train_file="train.tsv",
        dev_file="dev.tsv",
        text_column="question1",
        text_pair_column="question2",
        label_column="is_duplicate",
        label_names=("0", "1"),
        tfds_name="glue/qqp",
        tfds_text_key="question1",
        tfds_text_pair_key="question2",
        metrics=("accuracy", "f1"),
    ),
    # Three classes, in TFDS's id order; matched and mismatched dev sets.
    "mnli": TaskSpec(
        name="mnli",
        glue_dir="MNLI",
        train_file="train.tsv",
        dev_file="dev_matched.tsv",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="gold_label",
        label_names=("entailment", "neutral", "contradiction"),
        tfds_name="glue/mnli",
        tfds_text_key="premise",
        tfds_text_pair_key="hypothesis",
        tfds_dev_split="validation_matched",
    ),
    "mnli_mismatched": TaskSpec(
        name="mnli_mismatched",
        glue_dir="MNLI",
        train_file="train.tsv",
        dev_file="dev_mismatched.tsv",
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="gold_label",
        label_names=("entailment", "neutral", "contradiction"),
        tfds_name="glue/mnli",
        tfds_text_key="premise",
        tfds_text_pair_key="hypothesis",
        tfds_dev_split="validation_mismatched",
    ),
    "trec6": TaskSpec(
        name="trec6",
        glue_dir="",
        train_file="train_5500.label",
        dev_file="TREC_10.label",
        file_format="trec",
        text_column="question",
        label_column="coarse",
        label_names=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
        tfds_name="trec",
        tfds_text_key="text",
        tfds_label_key="label-coarse",
        tfds_dev_split="test",
    ),
    "trec50": TaskSpec(
        name="trec50",
        glue_dir="",
        train_file="train_5500.label",
        dev_file="TREC_10.label",
        file_format="trec_fine",
        text_column="question",
        label_column="fine",
        # Li & Roth's 50 fine classes.
        label_names=(
        "ABBR:abb", "ABBR:exp", "DESC:def", "DESC:desc", "DESC:manner", "DESC:reason",
        "ENTY:animal", "ENTY:body", "ENTY:color", "ENTY:cremat", "ENTY:currency",
        "ENTY:dismed", "ENTY:event", "ENTY:food", "ENTY:instru", "ENTY:lang", "ENTY:letter",
        "ENTY:other", "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport",
        "ENTY:substance", "ENTY:symbol", "ENTY:techmeth", "ENTY:termeq", "ENTY:veh",
        "ENTY:word", "HUM:desc", "HUM:gr", "HUM:ind", "HUM:title", "LOC:city", "LOC:country",
        "LOC:mount", "LOC:other", "LOC:state", "NUM:code", "NUM:count", "NUM:date", "NUM:dist",
        "NUM:money", "NUM:ord", "NUM:other", "NUM:perc", "NUM:period", "NUM:speed", "NUM:temp",
        "NUM:volsize", "NUM:weight",
        ),
        # No TFDS source: TFDS `trec` names 47 fine labels without their
        # coarse class (`desc`, `other` merged across classes).
        skip_unknown_train_labels=True,
    ),
}


CUSTOM = "custom"


def get_task(name):
    try:
        return TASKS[name]
    except KeyError:
        raise UserInputError(
            f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}, or {CUSTOM} "
            "with --train_file and --dev_file for your own data."
        ) from None


def task_for(data):
    """The task a `DataConfig` names: a registered one, or the user's own files."""
    if data.task != CUSTOM:
        return get_task(data.task)
    return TaskSpec(
        name=CUSTOM,
        glue_dir="",
        train_file=data.train_file,
        dev_file=data.dev_file,
        text_column=data.text_column,
        text_pair_column=data.text_pair_column,
        label_column=data.label_column,
        label_names=tuple(data.label_names or ()),
        file_format=CUSTOM,
    )
