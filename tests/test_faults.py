"""Faults of the machine and bad input around a finished run: one line that
names the problem and the fix, checked before expensive work, nothing lost."""

import errno
import os

import pytest

from msbert_tf import MSBert
from msbert_tf.errors import UserInputError
from msbert_tf.run_dir import RunDir, writable_folder, write_atomically
from tests.conftest import GLUE_DIR, fit_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fit_tiny_run(tmp_path_factory, max_calibration_examples=8)[0]


def _cli(module, *args):
    """(exit code, stderr) of `python -m msbert_tf.<module>` (a subprocess: the
    CLIs' absl flags share names and cannot all live in one process)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", f"msbert_tf.{module}", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def test_an_output_folder_that_is_a_file_or_under_one(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path in (blocker, blocker / "run"):
        with pytest.raises(UserInputError, match="cannot be written"):
            writable_folder(str(path), "--output_dir")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UserInputError, match="cannot be written"):
            writable_folder(str(tmp_path / "run"), "--output_dir")
    finally:
        tmp_path.chmod(0o700)


def test_a_full_disk_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("old")
    real_open = open

    class FullDisk:
        def __init__(self, *args, **kwargs):
            self.file = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, text):
            self.file.write(text[:3])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("builtins.open", FullDisk)
    with pytest.raises(UserInputError, match="No space left on device.*free some disk space"):
        write_atomically(str(path), "new contents")
    monkeypatch.undo()
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_truncated_weights_and_a_corrupt_threshold_are_one_line(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "exit_threshold.json").write_text("{not json")
    with pytest.raises(UserInputError, match="exit_threshold.json is corrupt.*calibrate"):
        MSBert.load(str(copy))
    weights = copy / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(UserInputError, match="truncated or corrupt"):
        MSBert.load(str(copy))


@pytest.mark.parametrize(
    "texts, message",
    [(None, "must be a list of strings"), ([5], "text 1 is 5, not a string"),
     (["fine", "caf\udce9"], "text 2 is not valid UTF-8")],
)
def test_predict_refuses_what_is_not_text(run, texts, message):
    with pytest.raises(UserInputError, match=message):
        MSBert.load(run).predict(texts, threshold=0.3)


def test_blank_lines_in_an_input_file_are_refused_not_skipped(run, tmp_path):
    lines = tmp_path / "in.txt"
    lines.write_text("good\n\nbad\n")
    code, err = _cli("predict", f"--run_dir={run}", f"--input_file={lines}")
    assert code == 2 and "blank lines (2)" in err


@pytest.mark.parametrize(
    "args, message",
    [(["--max_drop=-1"], "--max_drop must be 0 or more"),
     (["--max_examples=0"], "--max_examples must be at least 1"),
     (["--output=/proc/no/report.json"], "cannot be written")],
)
def test_evaluate_refuses_before_working(run, args, message):
    code, err = _cli("evaluate", f"--run_dir={run}", f"--data_file={GLUE_DIR}/SST-2/dev.tsv", *args)
    assert code == 2 and message in err, err


def test_evaluate_on_a_header_only_file(run, tmp_path):
    header = tmp_path / "dev.tsv"
    header.write_text("sentence\tlabel\n")
    code, err = _cli("evaluate", f"--run_dir={run}", f"--data_file={header}")
    assert code == 2 and "has no rows to evaluate" in err


def test_training_too_small_to_calibrate_keeps_the_full_model_and_says_why(run):
    record = RunDir(run).load_threshold()
    assert record["certified"] is False and record["threshold"] == 0.0
    assert "needs at least 230 rows" in record["summary"]


def test_a_full_disk_anywhere_in_a_command_is_one_line(capsys):
    from msbert_tf import cli

    def fills_up(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/sst2/checkpoints/teacher/x")

    code = cli.guarded(fills_up)(["train"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "No space left on device writing /runs/sst2/checkpoints/teacher/x: free some disk space" in err


def test_a_full_disk_in_tensorflows_own_writers_is_one_line(capsys):
    """SaveV2 (SavedModel, checkpoints) raises it as an op error, not OSError."""
    import tensorflow as tf

    from msbert_tf import cli

    def fills_up(argv):
        raise tf.errors.ResourceExhaustedError(None, None, "runs/x/variables_temp; No space left on device [Op:SaveV2]")

    def other(argv):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    assert cli.guarded(fills_up)(["train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device: free some disk space" in err
    with pytest.raises(tf.errors.ResourceExhaustedError):  # out of memory is not the disk
        cli.guarded(other)(["train"])


def test_other_os_errors_are_not_disguised():
    from msbert_tf import cli

    def broken(argv):
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError):
        cli.guarded(broken)(["train"])


@pytest.mark.parametrize(
    "kwargs, message",
    [({"uncertainty": "bogus"}, "uncertainty 'bogus' is not one of"),
     ({"uncertainty": "patience", "threshold": 0.5}, "the patience rule has no threshold"),
     ({"top_k": 3, "threshold": 0.5}, "the entropy rule does not read it")],
)
def test_settings_a_rule_would_ignore_are_refused(run, kwargs, message):
    with pytest.raises(UserInputError, match=message):
        MSBert.load(run).predict(["fine"], **kwargs)


@pytest.mark.parametrize("command, flags", [
    ("evaluate", ("--run_dir", "--thresholds", "--uncertainty", "--top_k", "--max_drop", "--tolerances")),
    ("predict", ("--run_dir", "--input_file", "--threshold", "--uncertainty", "--top_k", "--patience")),
    ("export", ("--run_dir", "--formats", "--quantize", "--threshold", "--uncertainty", "--top_k", "--patience")),
])
def test_help_lists_the_commands_flags_and_exits_0(command, flags):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", f"msbert_tf.{command}", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for flag in flags:
        assert f"  {flag}:" in done.stdout, flag
    if command == "evaluate":  # the usage example keeps its line break
        assert "--run_dir=runs/sst2 \\\n" in done.stdout


def test_commands_do_not_print_tensorflows_start_up_block(run):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "msbert_tf.predict", f"--run_dir={run}", "a fine film"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    # TensorFlow 2.21 wrote these (twice) before its logger started.
    for noise in ("oneDNN", "cuda", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in done.stderr, done.stderr
    # Asked for, TensorFlow's logs are back (what it prints differs by platform).
    loud = subprocess.run([sys.executable, "-m", "msbert_tf.predict", f"--run_dir={run}", "a fine film"],
                          capture_output=True, text=True, timeout=300, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert loud.returncode == 0 and len(loud.stderr.splitlines()) > len(done.stderr.splitlines())
    # --verbosity=1 brings them back too.
    verbose = subprocess.run([sys.executable, "-m", "msbert_tf.predict", f"--run_dir={run}", "--verbosity=1",
                              "a fine film"], capture_output=True, text=True, timeout=300, env=env)
    assert verbose.returncode == 0
    assert any(noise in verbose.stderr for noise in ("oneDNN", "cuda", "absl::InitializeLog", "cpu_feature_guard"))
