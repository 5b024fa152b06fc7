"""Callbacks of every training stage: throughput and loss record, and a NaN guard."""

import json
import math
import os
import shutil
import time

import keras
import numpy as np

from msbert_tf.errors import UserInputError
from msbert_tf.run_dir import check_room_for_weights, readable_checkpoint, write_failure


class TrainingDiverged(UserInputError):
    """The loss stopped being finite; the last checkpoint is untouched."""


class ThroughputMeter(keras.callbacks.Callback):
    """Examples per second of the train steps (leaving out the first, tracing)
    and the mean loss of each part.

    `earlier`: the record (`record()`) of the parts a killed process trained
    before this one resumed, kept with the checkpoint so that the stage's
    summary covers every part.
    """

    def __init__(self, batch_size, earlier=None):
        super().__init__()
        self.batch_size = batch_size
        self.earlier = earlier or {"steps": 0, "seconds": 0.0, "loss_per_part": []}
        self.times = []
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    def on_epoch_end(self, epoch, logs=None):
        if logs and "loss" in logs:
            self.losses.append(round(float(logs["loss"]), 6))

    def _seconds(self):
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def record(self):
        """Steps, seconds and per-part losses of every part so far."""
        return {
            "steps": self.earlier["steps"] + len(self.times),
            "seconds": round(self.earlier["seconds"] + self._seconds(), 2),
            "loss_per_part": self.earlier["loss_per_part"] + self.losses,
        }

    def summary(self):
        summary = self.record()
        if self.earlier["steps"]:
            summary["resumed_at_step"] = self.earlier["steps"]
        if len(self.times) > 1:
            # This process's steps only: a resumed one's rate is not the killed one's.
            summary["examples_per_second"] = round((len(self.times) - 1) * self.batch_size / self._seconds(), 1)
        return summary


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

    `record`: a function whose JSON-able result is saved with each
    checkpoint as `RECORD` (the parts' losses and times), read back by
    `saved_record`.

    ```python
    StageBackupAndRestore("RUN/checkpoints/teacher", "RUN/checkpoints/teacher")
    ```
    """

    RECORD = "parts.json"
    # Dropout's random state: Keras saves weights and optimizer, not the
    # seed generators' states, so a resumed stage would draw its masks anew.
    SEEDS = "seed_states.npz"

    def __init__(self, restore_dir, save_dir, record=None, **kwargs):
        super().__init__(readable_checkpoint(restore_dir), **kwargs)
        self.save_dir = save_dir
        self.record = record
        self.kwargs = kwargs

    @classmethod
    def saved_record(cls, restore_dir):
        """The record saved with the checkpoint in `restore_dir`, or None."""
        path = os.path.join(readable_checkpoint(restore_dir), cls.RECORD)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def _use_folder(self, folder):
        paths = keras.callbacks.BackupAndRestore(folder, **self.kwargs)
        for name in ("backup_dir", "_weights_path", "_training_metadata_path",
                     "_prev_weights_path", "_prev_training_metadata_path"):
            setattr(self, name, getattr(paths, name))

    def _seed_states(self):
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        saved = os.path.join(self.backup_dir, self.SEEDS)
        if os.path.exists(saved):
            # By position: the generators' names carry a per-process counter.
            with np.load(saved) as states:
                variables = self._seed_states()
                if len(states.files) != len(variables):
                    # Resuming with fresh dropout draws would not be the exact resume promised.
                    raise UserInputError(
                        f"the checkpoint in {self.backup_dir} holds {len(states.files)} random-state(s), this "
                        f"model has {len(variables)}: it was saved by another model; train into a new "
                        "--output_dir, or delete that folder to start the stage over."
                    )
                for index, variable in enumerate(variables):
                    variable.assign(states[str(index)])
        self._use_folder(self.save_dir)

    def _write_staging(self):
        super()._save_model()
        np.savez(os.path.join(self.backup_dir, self.SEEDS),
                 **{str(i): np.asarray(v) for i, v in enumerate(self._seed_states())})
        if self.record is not None:
            with open(os.path.join(self.backup_dir, self.RECORD), "w") as f:
                json.dump(self.record(), f)

    def _save_model(self):
        staging, old = self.save_dir + ".saving", self.save_dir + ".old"
        shutil.rmtree(staging, ignore_errors=True)
        check_room_for_weights(self.model, staging)
        self._use_folder(staging)
        failed = write_failure(self._write_staging, self._weights_path)
        self._use_folder(self.save_dir)
        if failed:
            # The previous checkpoint stays; no half-written one is left.
            shutil.rmtree(staging, ignore_errors=True)
            raise OSError(failed.errno, failed.strerror, self.save_dir)
        if os.path.exists(self.save_dir):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.save_dir, old)
        os.replace(staging, self.save_dir)
        shutil.rmtree(old, ignore_errors=True)

