"""Readers that turn a task's files (or its TFDS split) into `Examples`.

Both sources give the same `Examples`, so everything downstream is one
pipeline. Every problem in a file is reported with the file and line.

```python
from msbert_tf.data import readers, tasks
examples = readers.read_split(tasks.get_task("sst2"), "dev", "../shared/data/glue")
len(examples), examples.text_a[0], examples.labels[0]
```
"""

import csv
import dataclasses
import json
import os
import sys
from typing import Optional

import numpy as np
from absl import logging

from msbert_tf.data import tasks
from msbert_tf.data.sentences import hold_out_sentences
from msbert_tf.errors import UserInputError

# SST-2 and friends have rows far below this; the default (128 KiB) is only
# raised so that an over-long row is reported by the length check, not by csv.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclasses.dataclass
class Examples:
    """Texts and integer label ids of one split."""

    text_a: list
    labels: np.ndarray
    text_b: Optional[list] = None

    def __len__(self):
        return len(self.text_a)

    def take(self, n):
        """The first `n` examples (all of them when `n` is None)."""
        if n is None or n >= len(self):
            return self
        return Examples(
            text_a=self.text_a[:n],
            labels=self.labels[:n],
            text_b=None if self.text_b is None else self.text_b[:n],
        )

    def select(self, indices):
        """The examples at `indices`, in that order."""
        return Examples(
            text_a=[self.text_a[i] for i in indices],
            labels=self.labels[indices],
            text_b=None if self.text_b is None else [self.text_b[i] for i in indices],
        )


def hold_out(examples, fraction, max_rows, seed):
    """(rest, held): `fraction` of the rows, at most `max_rows`, drawn at random
    with `seed`; `rest` keeps the file's order. `held` is None when nothing is
    held out."""
    count = int(round(fraction * len(examples)))
    if max_rows is not None:
        count = min(count, max_rows)
    if count == 0:
        return examples, None
    held = np.sort(np.random.default_rng(seed).choice(len(examples), size=count, replace=False))
    keep = np.setdiff1d(np.arange(len(examples)), held)
    return examples.select(keep), examples.select(held)


def read_split(task, split, data_dir=None):
    """Reads `split` ("train" or "dev") from `data_dir`, or TFDS when None."""
    if task.file_format == "custom":
        return read_file(task, {"train": task.train_file, "dev": task.dev_file}[split])
    if data_dir is None:
        return read_tfds(task, split)
    file_name = {"train": task.train_file, "dev": task.dev_file}[split]
    path = os.path.join(data_dir, task.glue_dir, file_name)
    if not os.path.isfile(path):
        folder = f"{task.glue_dir}/" if task.glue_dir else file_name
        raise UserInputError(
            f"{task.name} {file_name} not found at {path}: pass "
            f"--data_dir=<folder holding {folder}>, "
            "or leave --data_dir out to read TFDS."
        )
    return read_file(task, path, split_is_train=split == "train")


def training_rows(task, data, seed):
    """(rows to train on, calibration rows held out or None) of `data` (a
    DataConfig): the held-out rows are drawn before `max_train_examples`."""
    fraction = 0.0 if data.calibration_file or data.calibration_source == "dev" else data.calibration_fraction
    split = hold_out
    if data.calibration_source == "held_out_sentences" and fraction > 0:
        if task.is_pair:
            raise UserInputError(
                f"calibration_source=held_out_sentences holds out sentences of a file of phrases; {task.name} "
                "is a pair task: use --calibration_source=held_out."
            )
        split = hold_out_sentences
    rest, held = split(read_split(task, "train", data.data_dir), fraction, data.max_calibration_examples, seed)
    return rest.take(data.max_train_examples), held


def read_file(task, path, split_is_train=False):
    """One labelled file of `task` in its own layout (GLUE TSV or TREC)."""
    if not os.path.isfile(path):
        raise UserInputError(f"{path} does not exist: give a {task.name} file ({_layout(task)}).")
    if task.file_format in ("trec", "trec_fine"):
        return read_trec(task, path, skip_unknown=split_is_train and task.skip_unknown_train_labels)
    if task.file_format == "custom":
        return read_custom(task, path)
    return read_glue_tsv(task, path)


def read_texts(task, path):
    """Unlabelled rows: plain UTF-8 text, one example per line; for a pair
    task a tab separates the two texts. Labels are zeros (there are none)."""
    if not os.path.isfile(path):
        raise UserInputError(f"{path} does not exist: give a text file, one example per line.")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None
    text_a, text_b = [], []
    for number, line in enumerate(lines, start=1):
        parts = line.split("\t") if task.is_pair else [line]
        if len(parts) != (2 if task.is_pair else 1) or not all(p.strip() for p in parts):
            wanted = "two texts with one tab between them" if task.is_pair else "a text"
            raise UserInputError(f"{path}, line {number}: expected {wanted}, got {line!r}.")
        text_a.append(parts[0].strip())
        if task.is_pair:
            text_b.append(parts[1].strip())
    return Examples(
        text_a=text_a, labels=np.zeros(len(text_a), label_dtype(task)), text_b=text_b if task.is_pair else None
    )


def _layout(task):
    if task.file_format == "custom":
        return f"CSV, TSV or JSON Lines with columns {_columns(task)}"
    if task.file_format in ("trec", "trec_fine"):
        return "`COARSE:fine question` per line"
    if task.header:
        return f"tab-separated, no header, columns {list(task.header)}"
    return f"tab-separated, header with {task.text_column!r} and {task.label_column!r}"


def read_trec(task, path, skip_unknown=False):
    text_a, labels = [], []
    with open(path, encoding="utf-8-sig") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as e:
            raise _not_utf8(path, e) from None
    for line, row in enumerate(lines, start=1):
        if not row.strip():
            continue
        label, _, question = row.partition(" ")
        if ":" not in label:
            raise UserInputError(f"{path}, line {line}: expected `COARSE:fine question`, got {row[:40]!r}.")
        if task.file_format == "trec":
            label = label.split(":")[0]
        if skip_unknown and label not in task.label_names:
            logging.warning("%s, line %d: label %r is not one of %s's; row skipped.", path, line, label, task.name)
            continue
        text_a.append(_text(question, path, line))
        labels.append(_label_id(task, label, path, line))
    return Examples(text_a=text_a, labels=np.asarray(labels, dtype=np.int32))


CUSTOM_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def _columns(task):
    return [c for c in (task.text_column, task.text_pair_column, task.label_column) if c]


def _custom_rows(task, path):
    """(line, row dict) of a CSV / TSV file with a header, or of a JSON Lines file."""
    kind = CUSTOM_FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise UserInputError(
            f"{path}: unknown file type; use .csv, .tsv or .jsonl (one JSON object per line)."
        )
    with open(path, encoding="utf-8-sig", newline="") as f:
        try:
            if kind == "jsonl":
                for line, text in enumerate(f, start=1):
                    if text.strip():
                        yield line, _json_row(text, path, line)
                return
            # TSV as GLUE writes it: tabs separate, quotes are text.
            rows = (csv.DictReader(f) if kind == "csv"
                    else csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            missing = [c for c in _columns(task) if c not in (rows.fieldnames or [])]
            if missing:
                raise UserInputError(
                    f"{path}: header {rows.fieldnames} lacks column(s) {missing}; name the columns "
                    "with --text_column, --text_pair_column and --label_column."
                )
            for row in rows:
                line = rows.line_num  # the file's line, even where a quoted field spans lines
                if None in row or None in row.values():
                    raise UserInputError(f"{path}, line {line}: the row has a different number of columns than the header.")
                yield line, row
        except UnicodeDecodeError as e:
            raise _not_utf8(path, e) from None


def _json_row(text, path, line):
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}, line {line}: not a JSON object ({e.msg}).") from None
    if not isinstance(row, dict):
        raise UserInputError(f"{path}, line {line}: expected a JSON object, got {type(row).__name__}.")
    return row


def _field(row, column, path, line, label=False):
    """A text (a string) or a label (a string, or a JSON integer like 1 or 1.0) of a row."""
    if column not in row:
        raise UserInputError(f"{path}, line {line}: no {column!r} field (fields: {sorted(row)}).")
    value = row[column]
    if isinstance(value, str):
        return value
    if label and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return str(int(value))
    kind = "a label (a string or an integer)" if label else "a text (a string)"
    raise UserInputError(f"{path}, line {line}: field {column!r} is {json.dumps(value)}, not {kind}.")


def read_custom(task, path):
    text_a, text_b, labels = [], [], []
    for line, row in _custom_rows(task, path):
        text_a.append(_text(_field(row, task.text_column, path, line), path, line))
        if task.text_pair_column:
            text_b.append(_text(_field(row, task.text_pair_column, path, line), path, line))
        labels.append(_label_id(task, _field(row, task.label_column, path, line, label=True), path, line))
    if not labels:
        raise UserInputError(f"{path} has no rows.")
    return Examples(
        text_a=text_a,
        labels=np.asarray(labels, dtype=np.int32),
        text_b=text_b if task.text_pair_column else None,
    )


def infer_label_names(task):
    """The label set of a custom task: every value in its training file, sorted
    (numerically when they are all integers)."""
    names = {_field(row, task.label_column, task.train_file, line, label=True).strip()
             for line, row in _custom_rows(task, task.train_file)}
    if len(names) < 2:
        raise UserInputError(
            f"{task.train_file}: column {task.label_column!r} has {len(names)} distinct label(s); "
            "a classifier needs at least 2."
        )
    numeric = all(n.lstrip("-").isdigit() for n in names)
    return tuple(sorted(names, key=int if numeric else str))


def resolve_task(data):
    """`tasks.task_for(data)`, with a custom task's labels read from its training file
    (and kept in `data`, so that the run folder's config holds them)."""
    task = tasks.task_for(data)
    if task.file_format == "custom" and not data.label_names:
        if not os.path.isfile(task.train_file):
            raise UserInputError(f"--train_file {task.train_file} does not exist.")
        data.label_names = infer_label_names(task)
        task = tasks.task_for(data)
    return task


def read_rows(task, path):
    """(examples, labelled) for label-free uses (calibration's disagreement):
    plain text (`.txt`, one example per line, a tab between a pair's texts),
    a GLUE TSV of the task with or without its label column, or any file of
    the task's layout."""
    if path.endswith(".txt"):
        return read_texts(task, path), False
    if task.file_format == "glue_tsv" and not task.header and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                header = next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), None)
        except UnicodeDecodeError as e:
            raise _not_utf8(path, e) from None
        if header is not None and task.label_column not in header:
            return read_glue_tsv(task, path, labelled=False), False
    return read_file(task, path), True


def read_glue_tsv(task, path, labelled=True):
    """A GLUE TSV of `task`; `labelled=False` reads one without its label
    column (labels are zeros)."""
    try:
        return _read_glue_tsv(task, path, labelled)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None


def _read_glue_tsv(task, path, labelled):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(task.header) if task.header else next(rows, None)
        if header is None:
            raise UserInputError(f"{path} is empty: expected a header row.")
        columns = [task.text_column] + ([task.label_column] if labelled else [])
        if task.text_pair_column:
            columns.append(task.text_pair_column)
        missing = [c for c in columns if c not in header]
        if missing:
            raise UserInputError(
                f"{path}: header {header} lacks column(s) {missing}; "
                "is this the right file for the task?"
            )
        index = {c: header.index(c) for c in columns}
        text_a, text_b, labels = [], [], []
        for line, row in enumerate(rows, start=1 if task.header else 2):
            if len(row) != len(header):
                raise UserInputError(
                    f"{path}, line {line}: {len(row)} columns where the "
                    f"header has {len(header)}; fix or remove that row."
                )
            text_a.append(_text(row[index[task.text_column]], path, line))
            if task.text_pair_column:
                text_b.append(_text(row[index[task.text_pair_column]], path, line))
            labels.append(_label_id(task, row[index[task.label_column]], path, line) if labelled else 0)
    return Examples(
        text_a=text_a,
        labels=np.asarray(labels, dtype=label_dtype(task)),
        text_b=text_b if task.text_pair_column else None,
    )


def read_tfds(task, split):
    import tensorflow_datasets as tfds

    if task.tfds_name is None:
        raise UserInputError(f"{task.name} has no TFDS source: pass --data_dir=<folder with its files>.")
    tfds_split = {"train": "train", "dev": task.tfds_dev_split}[split]
    try:
        dataset, info = tfds.load(task.tfds_name, split=tfds_split, with_info=True)
    except ImportError as e:
        # An install problem, not a network one: offline advice would mislead.
        raise UserInputError(
            f"TFDS cannot prepare {task.tfds_name}: a module it needs is missing ({e}); "
            "reinstall with `pip install -e .`, or pass --data_dir=<GLUE folder>."
        ) from None
    except Exception as e:  # noqa: BLE001 - any other TFDS failure means the same fix.
        raise UserInputError(
            f"could not load TFDS {task.tfds_name}[{tfds_split}] ({type(e).__name__}: "
            f"{_first_line(e)}): TFDS downloads the data on first use and needs a network; "
            "offline, pass --data_dir=<folder with the task's files, e.g. GLUE's SST-2/train.tsv>."
        ) from None
    # A regression's label is a float feature, without class names.
    names = None if task.regression else info.features[task.tfds_label_key].names
    return examples_from_records(
        task, tfds.as_numpy(dataset), source=f"TFDS {task.tfds_name}", source_label_names=names
    )


def _first_line(error):
    return str(error).splitlines()[0][:300] if str(error) else ""


def examples_from_records(task, records, source, source_label_names=None):
    """Examples from TFDS-style feature dicts (bytes texts, int labels).

    GLUE's TFDS ids are the GLUE label ids; a dataset whose label names are
    the task's own (TREC) is mapped by name, whatever its id order.
    """
    by_name = source_label_names is not None and set(source_label_names) == set(task.label_names)
    text_a, text_b, labels = [], [], []
    for row, record in enumerate(records):
        text_a.append(_text(record[task.tfds_text_key].decode("utf-8"), source, row))
        if task.tfds_text_pair_key:
            text_b.append(_text(record[task.tfds_text_pair_key].decode("utf-8"), source, row))
        if task.regression:
            labels.append(_label_id(task, str(record[task.tfds_label_key]), source, row))
            continue
        label = int(record[task.tfds_label_key])
        if by_name:
            label = task.label_names.index(source_label_names[label])
        if not 0 <= label < task.num_labels:
            raise UserInputError(
                f"{source}, row {row}: label {label} is outside 0..{task.num_labels - 1}."
            )
        labels.append(label)
    return Examples(
        text_a=text_a,
        labels=np.asarray(labels, dtype=label_dtype(task)),
        text_b=text_b if task.tfds_text_pair_key else None,
    )


def label_dtype(task):
    return np.float32 if task.regression else np.int32


def _not_utf8(path, error):
    # `error.start` counts from the decoder's current chunk, not the file: not shown.
    return UserInputError(f"{path} is not UTF-8 text ({error.reason}); save it as UTF-8.")


def _text(value, path, line):
    text = value.strip()
    if not text:
        raise UserInputError(f"{path}, line {line}: empty text; remove the row or fill it in.")
    return text


def _label_id(task, value, path, line):
    """The class id of `value`, or for a regression task its number."""
    if task.regression:
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not np.isfinite(number):
            raise UserInputError(
                f"{path}, line {line}: {task.label_column} {value!r} is not a number; "
                f"task {task.name} is a regression on real-valued scores."
            )
        return number
    try:
        return task.label_names.index(value.strip())
    except ValueError:
        raise UserInputError(
            f"{path}, line {line}: label {value!r} is not in the label set "
            f"{list(task.label_names)} of task {task.name}."
        ) from None
