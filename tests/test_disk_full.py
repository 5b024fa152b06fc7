"""A disk that fills during training or export, on a real full file system,
and a read-only one: a small tmpfs, mounted where root allows (skipped elsewhere; tests/test_faults.py
covers the message with a write hook that raises ENOSPC)."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import GLUE_DIR

TRAIN_ARGS = [
    "--backbone=random", f"--data_dir={GLUE_DIR}", "--max_train_examples=96", "--max_eval_examples=32",
    "--max_seq_length=32", "--batch_size=16", "--teacher.epochs=1", "--distill.epochs=1",
    "--checkpoint_every_steps=3", "--head_dim=8", "--nojit_compile", "--timing_examples=0",
]
# The same command, with the room check before each checkpoint turned off:
# the disk then fills in the middle of h5py's write.
WITHOUT_ROOM_CHECK = """
import sys
from msbert_tf import cli, train
import msbert_tf.training.callbacks as callbacks
callbacks.check_room_for_weights = lambda *args: None
sys.argv = ["train"] + sys.argv[1:]
cli.run(train.main)
"""


@contextlib.contextmanager
def _disk(folder, size, options=""):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])


@pytest.fixture
def small_disk(tmp_path):
    with _disk(tmp_path / "disk", "2m") as folder:
        yield folder


@pytest.mark.parametrize("room_check", [True, False], ids=["checked_before", "filled_mid_write"])
def test_a_full_disk_in_training_is_one_line_and_leaves_no_half_checkpoint(small_disk, room_check):
    run = small_disk / "run"
    command = ["-m", "msbert_tf.train"] if room_check else ["-c", WITHOUT_ROOM_CHECK]
    done = subprocess.run([sys.executable, *command, *TRAIN_ARGS, f"--output_dir={run}"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    # Not 139: h5py's half-written file used to crash the interpreter at exit.
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "free some disk space" in errors[0]
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    left = [os.path.join(d, f) for d, dirs, files in os.walk(run) for f in dirs + files]
    assert not [p for p in left if ".saving" in p or ".tmp" in p], left


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import fit_tiny_run

    return fit_tiny_run(tmp_path_factory, max_calibration_examples=100)[0]


# The tiny run's bundles take 2.2 MB (LiteRT) and 7.4 MB (SavedModel): the
# disk fills in the first, or after the first is whole, in the second.
@pytest.mark.parametrize("size, whole", [("1m", []), ("4m", ["tflite_none"])], ids=["in_litert", "in_saved_model"])
def test_a_full_disk_in_export_is_one_line_and_leaves_no_half_bundle(tiny_run, tmp_path, size, whole):
    with _disk(tmp_path / "disk", size) as disk:
        done = subprocess.run([sys.executable, "-m", "msbert_tf.export", f"--run_dir={tiny_run}",
                               f"--output_dir={disk / 'export'}"],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        assert done.returncode == 2, done.stderr[-3000:]
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "free some disk space" in errors[0]
        assert "Traceback" not in done.stderr
        # Quiet by default: none of TensorFlow's saver and signature lines.
        assert "signature_serialization" not in done.stderr and "functional_saver" not in done.stderr
        assert sorted(os.listdir(disk / "export")) == whole
        for name in whole:  # a bundle that is there is whole
            assert json.loads((disk / "export" / name / "manifest.json").read_text())["stages"]


def test_a_read_only_file_system_is_refused_before_any_work(tiny_run, tmp_path):
    """Root writes into a folder without write permission (tests/test_faults.py
    skips there); nobody writes into a read-only mount."""
    with _disk(tmp_path / "disk", "1m", ",ro") as disk:
        commands = [
            ["msbert_tf.train", *TRAIN_ARGS, f"--output_dir={disk / 'run'}"],
            ["msbert_tf.evaluate", f"--run_dir={tiny_run}", f"--data_file={GLUE_DIR}/SST-2/dev.tsv",
             f"--output={disk / 'eval' / 'report.json'}"],
            ["msbert_tf.export", f"--run_dir={tiny_run}", f"--output_dir={disk / 'export'}"],
        ]
        for command in commands:
            done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
            assert done.returncode == 2, (command[0], done.stderr[-2000:])
            (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert "cannot be written" in error and "Read-only file system" in error, error
            # Refused before the work: no training step, no evaluation line.
            assert "stage teacher" not in done.stderr and "evaluating" not in done.stderr, done.stderr[-2000:]
        assert os.listdir(disk) == []
