"""The train CLI as a user runs it: real MiniLM weights, a few hundred SST-2 rows."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from msbert_tf.data import readers, tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(*args):
    return subprocess.run(
        [sys.executable, "-m", "msbert_tf.train", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
def test_cli_trains_minilm_and_reports_every_exit(glue_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        "--config=configs/sst2.json", f"--data_dir={glue_dir}", f"--output_dir={out}",
        "--max_train_examples=480", "--max_eval_examples=200", "--teacher_epochs=2",
        "--distill_epochs=2", "--learning_rate=1e-4", "--nojit_compile",
    ]
    done = _train(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["dev"]["exits"]) == 6
    assert report["dev"]["teacher"] == report["dev"]["exits"][-1]
    dev = readers.read_split(tasks.get_task("sst2"), "dev", glue_dir).take(200)
    majority = 100 * max(np.mean(dev.labels), 1 - np.mean(dev.labels))
    # 480 rows are enough to beat always-the-majority-label clearly.
    assert report["dev"]["teacher"] > majority + 10, report["dev"]
    for name in ("config.json", "teacher.weights.h5", "model.weights.h5", "report.md"):
        assert (out / name).exists(), name
    assert os.listdir(out / "logs" / "teacher")
    # A second run with the same command finds both stages done.
    again = _train(*args)
    assert again.returncode == 0
    assert json.loads((out / "report.json").read_text())["dev"] == report["dev"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task=sst3"], "unknown task 'sst3'"),
        (["--data_dir=/nonexistent"], "not found at /nonexistent/SST-2/train.tsv"),
        (["--backbone=no_such_preset_dir/"], "could not load backbone"),
        (["--max_seq_length=1000"], "above the backbone's maximum 512"),
        (["--distill_loss=mse"], "distill.loss='mse' is not one of"),
        (["--config=configs/nope.json"], "config file configs/nope.json does not exist"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, args, message):
    done = _train(f"--output_dir={tmp_path / 'run'}", "--data_dir=../shared/data/glue", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
