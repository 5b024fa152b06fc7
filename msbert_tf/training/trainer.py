"""The two training stages, resumable, on any `tf.distribute` strategy's scope.

```python
from msbert_tf.config import RunConfig
from msbert_tf.training.trainer import train
config = RunConfig.from_dict({"data": {"data_dir": "../shared/data/glue",
                                       "max_train_examples": 64, "max_eval_examples": 32},
                              "model": {"backbone": "random"},
                              "teacher": {"epochs": 1}, "distill": {"epochs": 1}})
result = train(config, "/tmp/msbert_run")
result.classifier  # teacher + trained exit heads
```
"""

import dataclasses
import math
import os
import shutil
import sys

import keras
import tensorflow as tf
from absl import logging

from msbert_tf.config import differing_settings
from msbert_tf.data import pipeline, readers, tasks
from msbert_tf.errors import UserInputError
from msbert_tf.losses.distill import DistillationLoss
from msbert_tf.models.build import build_classifier
from msbert_tf.models.classifier import MSBertClassifier
from msbert_tf import run_dir as run_dir_lib
from msbert_tf.training.callbacks import LossGuard, ThroughputMeter, StageBackupAndRestore
from msbert_tf.training.stage_models import DistillationModel, TeacherModel
from msbert_tf.training.strategy import is_multi_worker, make_strategy, worker_name


@dataclasses.dataclass
class TrainResult:
    classifier: MSBertClassifier
    preprocessor: object
    task: tasks.TaskSpec
    dev_split: pipeline.EncodedSplit
    stages: dict
    # False on every worker of a multi-worker run but the chief.
    chief: bool = True
    # Where this process wrote its weights: the run folder, or RUN/workers/<name>
    # on a worker that is not the chief.
    output_dir: str = None


def load_splits(config, task, preprocessor):
    """Encoded train and dev splits, and the calibration rows held out of
    training (raw examples; None with a calibration file or fraction 0)."""
    data = config.data
    train_examples, calibration = readers.training_rows(task, data, config.seed)
    dev_examples = readers.read_split(task, "dev", data.data_dir).take(data.max_eval_examples)
    for name, examples in (("training", train_examples), ("dev", dev_examples)):
        if len(examples) == 0:
            raise UserInputError(f"the {task.name} {name} data has no rows: check the file.")
    logging.info(
        "%s: %d train, %d dev and %d held-out calibration examples.",
        task.name, len(train_examples), len(dev_examples), 0 if calibration is None else len(calibration),
    )
    return (
        pipeline.encode(train_examples, preprocessor, name=f"{task.name} train"),
        pipeline.encode(dev_examples, preprocessor, name=f"{task.name} dev"),
        calibration,
    )


def _optimizer(stage_config, total_steps):
    warmup = int(stage_config.warmup_ratio * total_steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else stage_config.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        warmup_target=stage_config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=getattr(stage_config, "weight_decay", 0.0)
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _teacher_objective(task):
    """Stage 1's loss and logged metric: squared error for regression, else cross-entropy."""
    if task.regression:
        return {"loss": keras.losses.MeanSquaredError(), "metrics": [keras.metrics.MeanAbsoluteError(name="mae")]}
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


def fit_stage(name, model, loss, metrics, stage_config, split, config, run, out, verbose, jit_compile, seed):
    """Runs one stage with checkpoints every `checkpoint_every_steps`.

    Keras' `BackupAndRestore` resumes at epoch boundaries, so the stage's
    steps are cut into equal "epochs" of at most that many steps; the data
    stream skips the batches already trained on, so a resumed stage sees the
    same batches as an uninterrupted one. State is read from `run` and
    written to `out` (the same folder except on a multi-worker run's
    non-chief workers).
    """
    batch_size = config.data.batch_size
    # The multi-worker step is never compiled (stage_models): no XLA padding.
    jit_compile = jit_compile and not is_multi_worker(tf.distribute.get_strategy())
    total_steps = max(1, math.ceil(stage_config.epochs * len(split) / batch_size))
    chunks = math.ceil(total_steps / config.checkpoint_every_steps)
    steps_per_chunk = math.ceil(total_steps / chunks)
    done = run_dir_lib.completed_epochs(run.checkpoint_dir(name))
    logging.info(
        "stage %s: %d steps of %d examples in %d parts; %d part(s) done before.",
        name, chunks * steps_per_chunk, batch_size, chunks, done,
    )
    if done:
        logging.info("resuming stage %s at step %d of %d.", name, done * steps_per_chunk, chunks * steps_per_chunk)
    dataset = pipeline.train_dataset(
        split, batch_size, config.data.bucket_boundaries, seed=seed,
        skip_batches=done * steps_per_chunk,
        pad_to_bucket_boundary=jit_compile,
    )
    model.compile(
        optimizer=_optimizer(stage_config, chunks * steps_per_chunk),
        loss=loss, metrics=metrics, jit_compile=jit_compile,
    )
    # Variables must exist before BackupAndRestore loads into them.
    model({key: value[:batch_size] for key, value in split.features.items()})
    earlier = StageBackupAndRestore.saved_record(run.checkpoint_dir(name)) if done else None
    meter = ThroughputMeter(batch_size, earlier)
    model.fit(
        dataset,
        epochs=chunks,
        steps_per_epoch=steps_per_chunk,
        callbacks=[
            # First: it raises at a non-finite loss or weights before
            # BackupAndRestore saves them, so the last checkpoint stays good.
            LossGuard(name, steps_per_chunk, run.checkpoint_dir(name)),
            # Before the checkpoint, which saves its record of the part.
            meter,
            # Kept until the stage's weights are saved (the caller removes it):
            # a kill between the two must not lose the stage.
            StageBackupAndRestore(
                run.checkpoint_dir(name), out.checkpoint_dir(name), record=meter.record, delete_checkpoint=False,
            ),
            keras.callbacks.TensorBoard(out.log_dir(name)),
        ],
        verbose=verbose,
    )
    return meter.summary()


# Settings that make two teachers the same; the heads and stage 2 may differ.
TEACHER_FIELDS = ("data.task", "data.data_dir", "data.train_file", "data.calibration_fraction",
                  "data.max_calibration_examples", "data.calibration_source", "data.calibration_file", "data.text_column",
                  "data.text_pair_column", "data.label_column", "data.label_names", "data.max_seq_length", "data.batch_size", "data.max_train_examples",
                  "data.bucket_boundaries", "model.backbone", "model.gelu",
                  "model.num_layers", "model.strip_accents", "model.dropout", "model.random_backbone",
                  "model.teacher_pooling",
                  "teacher", "seed", "checkpoint_every_steps")


def check_teacher_source(config):
    """`config.teacher_from`'s run: refused, before anything is written, when
    its teacher is unfinished or trained with other teacher settings."""
    source = run_dir_lib.RunDir(config.teacher_from)
    differ = differing_settings(config, source.load_config(), among=TEACHER_FIELDS)
    if differ:
        raise UserInputError(
            f"teacher_from={config.teacher_from} was trained with other {', '.join(differ)}; "
            "use the same data, backbone and teacher settings, or train a teacher here."
        )
    if not os.path.exists(source.teacher_weights):
        raise UserInputError(f"teacher_from={config.teacher_from} has no finished teacher yet.")
    return source


def import_teacher(classifier, config, task):
    """Copies backbone and C_T from `config.teacher_from`'s finished stage 1."""
    source = check_teacher_source(config)
    donor, _ = build_classifier(source.load_config(), task)
    donor.load_weights(source.teacher_weights)
    for mine_w, donor_w in zip(
        classifier.backbone.weights + classifier.teacher_dense.weights,
        donor.backbone.weights + donor.teacher_dense.weights,
        strict=True,
    ):
        mine_w.assign(donor_w)
    logging.info("teacher copied from %s.", source.teacher_weights)
    return {**source.load_stages().get("teacher", {}), "copied_from": config.teacher_from}


def check_task_settings(config, task):
    """Refuses the settings `task` cannot take (a regression has no labels to
    disagree on nor class probabilities to read), before anything runs."""
    if task.regression and config.distill.disagreement_penalty:
        raise UserInputError(
            f"distill.disagreement_penalty needs labels to disagree on; {task.name} is a regression: "
            "set --disagreement_penalty=0."
        )
    if task.regression and config.uncertainty not in (None, "patience"):
        raise UserInputError(
            f"uncertainty={config.uncertainty} reads class probabilities; {task.name} is a regression, whose "
            "exits stop by patience: drop --uncertainty."
        )


def train(config, output_dir, verbose="auto"):
    """Fine-tunes the teacher, then distils the exit heads; resumes where it stopped.

    `verbose="auto"`: a progress bar when a person watches (stderr is a
    terminal), else one line per part, with no control characters in log files.
    """
    if verbose == "auto":
        verbose = 1 if sys.stderr.isatty() else 2
    config.validate()
    task = readers.resolve_task(config.data)
    check_task_settings(config, task)
    if config.teacher_from:
        check_teacher_source(config)
    run = run_dir_lib.RunDir(output_dir)
    strategy = make_strategy(config.strategy, config.tpu)
    worker = worker_name(strategy)
    # Workers other than the chief read the run folder but write their own.
    out = run if worker is None else run_dir_lib.RunDir(run.file("workers", worker))
    if out is not run:
        # Refused here too: a worker that went on alone would wait forever for the chief.
        run.claim(config, write=False)
    out.claim(config)
    keras.utils.set_random_seed(config.seed)
    # Every variable (model, loss, optimizer) is made under the strategy.
    with strategy.scope():
        result = _train_stages(config, task, run, out, verbose)
    result.chief, result.output_dir = worker is None, out.path
    return result


def _train_stages(config, task, run, out, verbose):
    classifier, preprocessor = build_classifier(config, task)
    # Refused before an hour of training, not at the certificate after it.
    if not task.regression and not any(k <= classifier.num_layers for k in config.final_exits):
        raise UserInputError(
            f"final_exits={','.join(map(str, config.final_exits))} averages more exits than the model has "
            f"({classifier.num_layers}): give whole numbers up to {classifier.num_layers}, e.g. --final_exits=1."
        )
    train_split, dev_split, calibration = load_splits(config, task, preprocessor)
    if calibration is not None and out is run:
        run.save_calibration_rows(calibration)
    stages = run.load_stages()
    if os.path.exists(run.model_weights):
        classifier.load_weights(run.model_weights)
        logging.info("both stages were done before: loaded %s.", run.model_weights)
        return TrainResult(classifier, preprocessor, task, dev_split, stages)
    if os.path.exists(run.teacher_weights):
        classifier.load_weights(run.teacher_weights)
        logging.info("stage teacher was done before: loaded %s.", run.teacher_weights)
    elif config.teacher_from:
        stages["teacher"] = import_teacher(classifier, config, task)
        run_dir_lib.save_weights_atomically(classifier, out.teacher_weights)
        out.save_stages(stages)
    else:
        stages["teacher"] = fit_stage(
            "teacher", TeacherModel(classifier, config.teacher.train_token_embedding),
            **_teacher_objective(task),
            stage_config=config.teacher, split=train_split, config=config, run=run, out=out, verbose=verbose,
            jit_compile=config.jit_compile, seed=config.seed,
        )
        run_dir_lib.save_weights_atomically(classifier, out.teacher_weights)
        out.save_stages(stages)
        shutil.rmtree(out.checkpoint_dir("teacher"), ignore_errors=True)
    if classifier.num_layers < 2 and config.distill.epochs > 0:
        raise UserInputError(
            "exit heads need a backbone of at least 2 layers; set distill.epochs=0 to train "
            "a one-layer teacher alone."
        )
    if config.distill.epochs == 0:
        # Teacher only (e.g. the static smaller-model baseline): no heads trained.
        run_dir_lib.save_weights_atomically(classifier, out.model_weights)
        return TrainResult(classifier, preprocessor, task, dev_split, stages)
    distill_seed = config.seed if config.distill.seed is None else config.distill.seed
    if config.distill.seed is not None:
        keras.utils.set_random_seed(distill_seed)
        classifier.reset_exit_heads()
    distill_loss = DistillationLoss(
        config.distill,
        num_layers=classifier.num_layers,
        hidden_dim=classifier.backbone.hidden_dim,
        head_dim=config.model.head_dim,
        regression=task.regression,
    )
    stages["distill"] = fit_stage(
        "distill", DistillationModel(classifier, distill_loss), loss=None, metrics=None,
        stage_config=config.distill, split=train_split, config=config, run=run, out=out, verbose=verbose,
        jit_compile=config.jit_compile and config.distill.emd_solver != "exact", seed=distill_seed,
    )
    run_dir_lib.save_weights_atomically(classifier, out.model_weights)
    out.save_stages(stages)
    shutil.rmtree(out.checkpoint_dir("distill"), ignore_errors=True)
    return TrainResult(classifier, preprocessor, task, dev_split, stages)
