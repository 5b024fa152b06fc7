"""A disk that fills during training, on a real full file system: a tmpfs
of 2 MiB, mounted where root allows (skipped elsewhere; tests/test_faults.py
covers the message with a write hook that raises ENOSPC)."""

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


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)])


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
