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
    metric: str = "accuracy"

    @property
    def num_labels(self):
        return len(self.label_names)


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
}


def get_task(name):
    try:
        return TASKS[name]
    except KeyError:
        raise UserInputError(
            f"unknown task {name!r}: choose one of {', '.join(sorted(TASKS))}."
        ) from None
