"""The run folder: resolved config, stage weights, checkpoints, logs, report.

```
RUN/config.json                 the resolved RunConfig
RUN/teacher.weights.h5          classifier after stage 1
RUN/model.weights.h5            classifier after stage 2 (teacher + heads)
RUN/checkpoints/<stage>/        BackupAndRestore state while a stage runs
RUN/logs/<stage>/               TensorBoard
RUN/stages.json                 steps, seconds, examples/s of each stage
RUN/report.json, report.md      dev metrics per exit, stage timings
RUN/calibration.json            training rows held out for calibration
RUN/exit_threshold.json         the exit threshold predict and export use
RUN/exit_model.json             the learned exit rule's coefficients
```
A folder is only ever continued with the config it was started with.
"""

import errno
import json
import os
import shutil

import numpy as np

from msbert_tf.config import RunConfig, differing_settings
from msbert_tf.data import readers
from msbert_tf.errors import UserInputError

# Fields that change nothing already trained: a resumed run may differ here.
RESUMABLE_FIELDS = ("data.max_eval_examples", "data.eval_batch_size", "data.calibration_file", "strategy", "tpu")


def _setting(config, path):
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, tuple) else value


class RunDir:
    def __init__(self, path):
        self.path = path

    def file(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def teacher_weights(self):
        return self.file("teacher.weights.h5")

    @property
    def model_weights(self):
        return self.file("model.weights.h5")

    def checkpoint_dir(self, stage):
        return self.file("checkpoints", stage)

    def log_dir(self, stage):
        return self.file("logs", stage)

    def claim(self, config, write=True):
        """Writes `config` into a new folder, or checks it against the folder's
        (`write=False`: only checks)."""
        path = self.file("config.json")
        # A launch that failed before training anything does not bind the folder.
        started = any(
            os.path.exists(p)
            for p in (self.teacher_weights, self.model_weights, self.file("checkpoints"), self.file("stages.json"))
        )
        if os.path.exists(path) and started:
            # Through RunConfig: fields added since the folder was written take their defaults.
            saved = self.load_config()
            differ = differing_settings(saved, config, besides=RESUMABLE_FIELDS)
            if differ:
                details = "; ".join(f"{k}: {_setting(saved, k)!r} there, {_setting(config, k)!r} now" for k in differ)
                raise UserInputError(
                    f"{self.path} holds a run with another config ({details}); "
                    "resume with the same settings or pick a new --output_dir."
                )
        if write:
            writable_folder(self.path, "--output_dir")
            write_atomically(path, config.to_json())

    @property
    def calibration_rows(self):
        return self.file("calibration.json")

    @property
    def threshold(self):
        return self.file("exit_threshold.json")

    def save_calibration_rows(self, examples):
        """The held-out rows themselves, so that calibrating needs no data folder."""
        rows = {"text_a": examples.text_a, "text_b": examples.text_b, "labels": examples.labels.tolist()}
        write_atomically(self.calibration_rows, json.dumps(rows))

    def load_calibration_rows(self, task):
        """The run's held-out calibration rows, or None if it kept none."""
        rows = self._read_json(self.calibration_rows, "calibrate on your own rows with --data_file")
        if rows is None:
            return None
        return readers.Examples(
            text_a=rows["text_a"], text_b=rows["text_b"],
            labels=np.asarray(rows["labels"], dtype=readers.label_dtype(task)),
        )

    @property
    def exit_model(self):
        return self.file("exit_model.json")

    def save_exit_model(self, record):
        write_atomically(self.exit_model, json.dumps(record, indent=2))

    def load_exit_model(self):
        """The learned rule's record ({"features", "weights_by_final_exits",
        "rows"}), or None."""
        record = self._read_json(self.exit_model, f"refit it: `python -m msbert_tf.calibrate --run_dir={self.path} "
                                                  "--uncertainty=learned`")
        if record is not None and "weights" in record:  # earlier versions fitted the last exit alone
            record["weights_by_final_exits"] = {"1": record.pop("weights")}
        return record

    def save_threshold(self, record):
        write_atomically(self.threshold, json.dumps(record, indent=2))

    def load_threshold(self):
        """The chosen exit threshold ({} when none was chosen)."""
        record = self._read_json(self.threshold, f"run `python -m msbert_tf.calibrate --run_dir={self.path}` again") or {}
        if "speed" in record and "threshold" not in record:  # runs of earlier versions named it `speed`
            record["threshold"] = record.pop("speed")
        return record

    def _read_json(self, path, fix):
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserInputError(
                f"{path} is corrupt ({str(e).splitlines()[0]}): delete it and {fix}."
            ) from None

    def load_stages(self):
        """Timings of the stages finished so far (kept across resumes)."""
        path = self.file("stages.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def save_stages(self, stages):
        write_atomically(self.file("stages.json"), json.dumps(stages, indent=2))

    def load_config(self):
        path = self.file("config.json")
        if not os.path.exists(path):
            raise UserInputError(f"{self.path} is not a run folder (no config.json).")
        return RunConfig.from_file(path)


def writable_folder(path, flag):
    """Creates `path` if needed and proves it writable, before any expensive
    work: a folder that is a file, under a file or read-only is one line."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".msbert_write_check")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise UserInputError(
            f"{flag}={path} cannot be written ({e.strerror or e}): pick a folder you can write to "
            "(not a file, nor under one)."
        ) from None
    return path


def write_atomically(path, text):
    """Write-then-rename, so a kill mid-write leaves the previous file whole;
    a failed write (a full disk) leaves no partial file and is one line."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise UserInputError(
            f"could not write {path} ({e.strerror or e}): free some disk space or pick another folder, "
            "then run the same command again."
        ) from None


def save_weights_atomically(model, path):
    tmp = path[: -len(".weights.h5")] + ".tmp.weights.h5"
    save_weights(model, tmp)
    os.replace(tmp, path)


def save_weights(model, path):
    """`model.save_weights(path)`, refused before a byte is written when the
    disk cannot hold the file (`check_room_for_weights`); a write the disk
    fills anyway leaves no file and raises the plain ENOSPC error."""
    check_room_for_weights(model, path)
    failed = write_failure(lambda: model.save_weights(path, overwrite=True), path)
    if failed:
        raise OSError(failed.errno, failed.strerror, path)


def check_room_for_weights(model, path):
    """Raises ENOSPC when the disk under `path` cannot hold `model`'s weights
    and optimizer state: h5py, failing mid-write on a full disk, leaves a file
    object that retries the write when freed, prints tracebacks and crashes
    the interpreter at exit (exit 139, measured on a full tmpfs)."""
    optimizer = getattr(model, "optimizer", None)  # a model never compiled has none
    variables = list(model.variables) + list(getattr(optimizer, "variables", None) or [])
    # HDF5's own overhead is a few KiB per dataset; 1 MiB and 5% cover it.
    needed = int(1.05 * sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)) + 2**20
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if shutil.disk_usage(folder).free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (the weights need {needed / 2**20:.0f} MiB)", path)


def write_failure(write, path):
    """Runs `write()`, which writes the HDF5 file `path`; returns None, or
    the `OSError` it raised as a plain one (errno, strerror), with `path`
    gone. h5py's file, left open by a write the disk could not hold, retries
    its write when freed and, failing, stays open in HDF5 until exit, which
    then printed tracebacks and crashed the interpreter (exit 139, measured on
    a full tmpfs). Emptying the file first gives that last write room."""
    import gc
    import sys

    try:
        write()
        return None
    except OSError as e:
        failure = OSError(e.errno, os.strerror(e.errno) if e.errno else str(e))
        if os.path.exists(path):
            os.truncate(path, 0)
        # Leaving this block frees the failed write's frames and its file,
        # whose reports of the failure reported here are dropped.
        hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
    if os.path.exists(path):
        os.remove(path)
    return failure


def completed_epochs(checkpoint_dir):
    """How many `fit` epochs a BackupAndRestore folder says are done."""
    path = os.path.join(readable_checkpoint(checkpoint_dir), "training_metadata.json")
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return int(json.load(f)["epoch"])


def readable_checkpoint(folder):
    """`folder`, or the previous checkpoint that a kill between the two renames
    of a checkpoint swap left as `<folder>.old`."""
    old = folder + ".old"
    return old if not os.path.exists(folder) and os.path.exists(old) else folder
