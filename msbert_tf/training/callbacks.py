"""Callbacks of every training stage: throughput and loss record, and a NaN guard."""

import math
import os
import shutil
import time

import keras
import numpy as np

from msbert_tf.errors import UserInputError
from msbert_tf.run_dir import readable_checkpoint


class TrainingDiverged(UserInputError):
    """The loss stopped being finite; the last checkpoint is untouched."""


class ThroughputMeter(keras.callbacks.Callback):
    """Examples per second of the train steps (leaving out the first, tracing)
    and the mean loss of each part."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size
        self.times = []
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        if logs and "loss" in logs:
            self.losses.append(round(float(logs["loss"]), 6))

    def summary(self):
        if len(self.times) < 2:
            return {"steps": len(self.times), "loss_per_part": self.losses}
        seconds = self.times[-1] - self.times[0]
        return {
            "steps": len(self.times),
            "seconds": round(seconds, 2),
            "examples_per_second": round((len(self.times) - 1) * self.batch_size / seconds, 1),
            "loss_per_part": self.losses,
        }


class LossGuard(keras.callbacks.Callback):
    """Stops a stage at the first non-finite loss, naming the step.

    It raises inside the batch, so no checkpoint is written after it: the
    stage's checkpoint folder keeps the last part that trained finitely. At
    the end of each part it also checks the weights (a finite loss can come
    with a non-finite update); listed before `BackupAndRestore`, it raises
    before they are saved.
    """

    def __init__(self, stage, steps_per_part, checkpoint_dir):
        super().__init__()
        self.stage = stage
        self.steps_per_part = steps_per_part
        self.checkpoint_dir = checkpoint_dir
        self.part = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.part = epoch

    def on_epoch_end(self, epoch, logs=None):
        bad = [w.path for w in self.model.trainable_weights if not np.all(np.isfinite(np.asarray(w)))]
        if bad:
            raise TrainingDiverged(
                f"stage {self.stage}: weights {bad[:3]} are not finite after part {epoch + 1}; "
                f"the checkpoint in {self.checkpoint_dir} still holds part {epoch}. Lower the learning rate."
            )

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            step = self.part * self.steps_per_part + batch + 1
            raise TrainingDiverged(
                f"stage {self.stage}: the loss became {loss} at step {step} (batch {batch + 1} of "
                f"part {self.part + 1}); training stopped and the last good checkpoint in "
                f"{self.checkpoint_dir} is kept. Lower the learning rate (a new --output_dir, or "
                "--teacher_from to keep a finished teacher) or check the data of that batch."
            )


class StageBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` with atomic saves, for one or several synchronous workers.

    A save writes weights and metadata into a fresh `<save_dir>.saving`
    folder and swaps it in by two renames, so a kill at any moment leaves a
    whole checkpoint: the new one, or the previous one (as `<dir>.old` if
    the kill fell between the renames; `readable_checkpoint` finds it).
    Keras' own save writes the two files in place, one after the other.

    Every worker restores from the chief's `restore_dir`, so all restart at
    the same step, and saves only into its own `save_dir` (the chief's is
    `restore_dir`): one writer per file.

    ```python
    StageBackupAndRestore("RUN/checkpoints/teacher", "RUN/checkpoints/teacher")
    ```
    """

    def __init__(self, restore_dir, save_dir, **kwargs):
        super().__init__(readable_checkpoint(restore_dir), **kwargs)
        self.save_dir = save_dir
        self.kwargs = kwargs

    def _use_folder(self, folder):
        paths = keras.callbacks.BackupAndRestore(folder, **self.kwargs)
        for name in ("backup_dir", "_weights_path", "_training_metadata_path",
                     "_prev_weights_path", "_prev_training_metadata_path"):
            setattr(self, name, getattr(paths, name))

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._use_folder(self.save_dir)

    def _save_model(self):
        staging, old = self.save_dir + ".saving", self.save_dir + ".old"
        shutil.rmtree(staging, ignore_errors=True)
        self._use_folder(staging)
        super()._save_model()
        self._use_folder(self.save_dir)
        if os.path.exists(self.save_dir):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.save_dir, old)
        os.replace(staging, self.save_dir)
        shutil.rmtree(old, ignore_errors=True)

