"""Loads a finished run folder for inference."""

import dataclasses
import os

from msbert_tf.data import tasks
from msbert_tf.errors import UserInputError
from msbert_tf.run_dir import RunDir
from msbert_tf.models.build import build_classifier


@dataclasses.dataclass
class TrainedRun:
    config: object
    task: tasks.TaskSpec
    classifier: object
    preprocessor: object
    run: RunDir


def load_run(path):
    run = RunDir(path)
    config = run.load_config()
    if not os.path.exists(run.model_weights):
        raise UserInputError(
            f"{path} has no trained exit heads ({os.path.basename(run.model_weights)}): "
            "finish training with `python -m msbert_tf.train` and the same --output_dir."
        )
    task = tasks.task_for(config.data)
    classifier, preprocessor = build_classifier(config, task)
    try:
        classifier.load_weights(run.model_weights)
    except OSError as e:
        raise UserInputError(
            f"{run.model_weights} cannot be read ({str(e).splitlines()[0][:120]}): the file is truncated or "
            "corrupt; restore it, or delete it and rerun the training command to redo stage 2."
        ) from None
    except ValueError as e:
        raise UserInputError(
            f"{run.model_weights} does not fit the model of {run.file('config.json')} "
            f"({str(e).splitlines()[0]}): was the folder's config edited?"
        ) from None
    return TrainedRun(config, task, classifier, preprocessor, run)
