"""A training process killed with SIGKILL resumes, with the same command, to the same report;
so does a run of two workers on localhost, which also trains like one worker."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from msbert_tf.run_dir import completed_epochs
from tests.localhost_cluster import localhost_worker_environments
from tests.conftest import tiny_config


def _command(config_path, run_dir):
    return [sys.executable, "-m", "msbert_tf.train", f"--config={config_path}",
            f"--output_dir={run_dir}", "--timing_examples=0"]


def _report(run_dir):
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    return report["dev"], [(p["threshold"], p["metric"], p["mean_exit_layer"]) for p in report["sweep"]]


def _launch_and_kill(command, checkpoints, envs=(None,)):
    """Starts `command` (once per environment in `envs`), SIGKILLs every process
    once `checkpoints` holds 2 finished parts."""
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for env in envs
    ]
    deadline = time.time() + 300
    while completed_epochs(checkpoints) < 2 and processes[0].poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert processes[0].poll() is None, "the run ended before it could be killed"
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.wait()


def _tiny_run_config(glue_dir, folder, dropout=0.1, **fields):
    config = tiny_config(glue_dir)
    config.data.max_train_examples = 160  # 10 steps per stage: 4 parts of 3 steps
    config.model.dropout = dropout
    config.jit_compile = False
    for name, value in fields.items():
        setattr(config, name, value)
    path = folder / f"config_{config.strategy}_{dropout}.json"
    path.write_text(config.to_json())
    return path


def _reference(glue_dir, tmp_path_factory, dropout):
    """One uninterrupted single-process run."""
    folder = tmp_path_factory.mktemp("reference")
    done = subprocess.run(_command(_tiny_run_config(glue_dir, folder, dropout), folder / "run"),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "run"


@pytest.fixture(scope="module")
def reference(glue_dir, tmp_path_factory):
    # With dropout: its random state is part of what a resumed run restores.
    return _reference(glue_dir, tmp_path_factory, dropout=0.1)


@pytest.fixture(scope="module")
def reference_without_dropout(glue_dir, tmp_path_factory):
    # Two workers draw dropout masks for their halves of a batch, not one
    # worker's masks for the whole: only without dropout do they train alike.
    return _reference(glue_dir, tmp_path_factory, dropout=0.0)


def test_sigkill_in_each_stage_then_same_command_gives_the_same_report(glue_dir, tmp_path, reference):
    run_dir = tmp_path / "killed"
    command = _command(_tiny_run_config(glue_dir, tmp_path), run_dir)
    _launch_and_kill(command, str(run_dir / "checkpoints" / "teacher"))
    assert not (run_dir / "teacher.weights.h5").exists()
    # Relaunched: resumes stage 1, is killed again in stage 2.
    _launch_and_kill(command, str(run_dir / "checkpoints" / "distill"))
    assert (run_dir / "teacher.weights.h5").exists() and not (run_dir / "report.json").exists()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"stage distill: .* [1-9][0-9]* part\(s\) done before", done.stderr)
    assert re.search(r"resuming stage distill at step [1-9][0-9]* of 12\.", done.stderr)
    assert _report(run_dir) == _report(reference)
    # Every part's record survives the kills: the same losses, part by part, in both stages.
    stages, uninterrupted = (json.loads((path / "stages.json").read_text()) for path in (run_dir, reference))
    for stage in ("teacher", "distill"):
        assert len(stages[stage]["loss_per_part"]) == 4, stage
        assert stages[stage]["loss_per_part"] == uninterrupted[stage]["loss_per_part"], stage
        assert stages[stage]["steps"] == uninterrupted[stage]["steps"] == 12
    assert stages["distill"]["resumed_at_step"] > 0


def test_two_workers_train_like_one_and_resume_after_sigkill(glue_dir, tmp_path, reference_without_dropout):
    """Same global batch over two worker processes: the same losses and
    report as one worker, after both were killed in stage 2 and started again."""
    run_dir = tmp_path / "two_workers"
    reference = reference_without_dropout
    command = _command(_tiny_run_config(glue_dir, tmp_path, dropout=0.0, strategy="multi_worker"), run_dir)
    envs = localhost_worker_environments(2)
    _launch_and_kill(command, str(run_dir / "checkpoints" / "distill"), envs)
    assert (run_dir / "teacher.weights.h5").exists() and not (run_dir / "report.json").exists()
    workers = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
               for env in envs]
    for process in workers:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
    assert _report(run_dir) == _report(reference)
    with open(run_dir / "stages.json") as f, open(reference / "stages.json") as g:
        two, one = json.load(f), json.load(g)
    assert two["teacher"]["loss_per_part"] == one["teacher"]["loss_per_part"]
    # The resumed stage keeps the record of the parts trained before the kill.
    assert two["distill"]["loss_per_part"] == one["distill"]["loss_per_part"]
    assert two["distill"]["resumed_at_step"] > 0
    # One writer per file: worker 1 wrote only under workers/worker_1.
    assert (run_dir / "workers" / "worker_1" / "model.weights.h5").exists()
    assert not (run_dir / "workers" / "worker_1" / "report.json").exists()
    assert sorted(os.listdir(run_dir / "workers")) == ["worker_1"]


def test_localhost_workers_get_distinct_ports():
    envs = localhost_worker_environments(16)
    workers = [json.loads(env["TF_CONFIG"])["cluster"]["worker"] for env in envs]
    assert all(w == workers[0] for w in workers)
    assert len(set(workers[0])) == 16
    assert [json.loads(env["TF_CONFIG"])["task"]["index"] for env in envs] == list(range(16))
