"""A training process killed with SIGKILL resumes, with the same command, to the same report."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from msbert_tf.training.run_dir import completed_epochs
from tests.conftest import tiny_config


def _command(config_path, run_dir):
    return [sys.executable, "-m", "msbert_tf.train", f"--config={config_path}",
            f"--output_dir={run_dir}", "--timing_examples=0"]


def _report(run_dir):
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    return report["dev"], [(p["speed"], p["metric"], p["mean_exit_layer"]) for p in report["sweep"]]


def _launch_and_kill(command, checkpoints):
    """Starts `command`, SIGKILLs it once `checkpoints` holds 2 finished parts."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while completed_epochs(checkpoints) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_sigkill_in_each_stage_then_same_command_gives_the_same_report(glue_dir, tmp_path):
    config = tiny_config(glue_dir)
    config.data.max_train_examples = 320  # 20 steps per stage, a checkpoint every 3
    config.model.dropout = 0.0  # without dropout a resumed run is exact
    config.jit_compile = False
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())

    reference = tmp_path / "reference"
    done = subprocess.run(_command(config_path, reference), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    run_dir = tmp_path / "killed"
    command = _command(config_path, run_dir)
    _launch_and_kill(command, str(run_dir / "checkpoints" / "teacher"))
    assert not (run_dir / "teacher.weights.h5").exists()
    # Relaunched: resumes stage 1, is killed again in stage 2.
    _launch_and_kill(command, str(run_dir / "checkpoints" / "distill"))
    assert (run_dir / "teacher.weights.h5").exists() and not (run_dir / "report.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"stage distill: .* [1-9][0-9]* part\(s\) done before", done.stderr)
    assert _report(run_dir) == _report(reference)
