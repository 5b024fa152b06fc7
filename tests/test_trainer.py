import json
import os

import numpy as np
import pytest

from msbert_tf.errors import UserInputError
from msbert_tf.training import trainer
from msbert_tf.training.run_dir import completed_epochs
from tests.conftest import tiny_config


def _weights(layer):
    return [w.numpy().copy() for w in layer.weights]


def _run(config, path):
    config.jit_compile = False  # seconds, not XLA compilations, on a tiny model
    return trainer.train(config, str(path), verbose=0)


def test_two_stages_leave_the_teacher_untouched(glue_dir, tmp_path):
    result = _run(tiny_config(glue_dir), tmp_path / "run")
    classifier = result.classifier
    trained = _weights(classifier.backbone) + _weights(classifier.teacher_dense)
    heads = _weights(classifier.exit_heads[0])
    classifier.load_weights(str(tmp_path / "run" / "teacher.weights.h5"))
    # Bit for bit: stage 2 did not move the backbone or C_T...
    for a, b in zip(trained, _weights(classifier.backbone) + _weights(classifier.teacher_dense)):
        np.testing.assert_array_equal(a, b)
    # ...while it did train the heads.
    assert any(not np.array_equal(a, b) for a, b in zip(heads, _weights(classifier.exit_heads[0])))
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert set(stages) == {"teacher", "distill"}
    assert stages["teacher"]["steps"] == 6  # 96 rows / 16 per batch


def test_rerun_continues_instead_of_restarting(glue_dir, tmp_path):
    path = tmp_path / "run"
    _run(tiny_config(glue_dir), path)
    final = (path / "model.weights.h5").read_bytes()
    os.remove(path / "model.weights.h5")  # as if stopped during stage 2
    result = _run(tiny_config(glue_dir), path)
    # Stage 1 was not run again: its record is the first run's.
    assert json.loads((path / "stages.json").read_text())["teacher"]["steps"] == 6
    assert result.classifier.exit_heads[0].weights
    assert (path / "model.weights.h5").read_bytes() != b"" and final


def _no_dropout(glue_dir):
    # Dropout masks after a resume come from a fresh random stream, so only a
    # dropout-free run can be compared to the last bit; data order, weights
    # and optimizer state are what this test checks.
    config = tiny_config(glue_dir)
    config.model.dropout = 0.0
    return config


def test_interrupted_stage_resumes_from_its_checkpoint(glue_dir, tmp_path, monkeypatch):
    reference = _run(_no_dropout(glue_dir), tmp_path / "reference").classifier

    calls = {"n": 0}
    original = trainer.ThroughputMeter.on_train_batch_end

    def crash_after_four(self, batch, logs=None):
        original(self, batch, logs)
        calls["n"] += 1
        if calls["n"] == 4:  # in the second checkpointed part of stage 1
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer.ThroughputMeter, "on_train_batch_end", crash_after_four)
    path = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(_no_dropout(glue_dir), path)
    assert completed_epochs(str(path / "checkpoints" / "teacher")) == 1
    monkeypatch.setattr(trainer.ThroughputMeter, "on_train_batch_end", original)
    resumed = _run(_no_dropout(glue_dir), path).classifier
    for a, b in zip(_weights(reference), _weights(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_run_folder_refuses_another_config(glue_dir, tmp_path):
    path = tmp_path / "run"
    _run(tiny_config(glue_dir), path)
    other = tiny_config(glue_dir)
    other.distill.loss = "kl"
    with pytest.raises(UserInputError, match="distill.loss: 'emd' there, 'kl' now"):
        _run(other, path)


def test_teacher_from_reuses_another_runs_teacher(glue_dir, tmp_path):
    first = _run(tiny_config(glue_dir), tmp_path / "first").classifier
    other = tiny_config(glue_dir)
    other.model.head = "mlp"
    other.distill.loss = "kl"
    other.teacher_from = str(tmp_path / "first")
    second = _run(other, tmp_path / "second").classifier
    for a, b in zip(_weights(first.backbone) + _weights(first.teacher_dense),
                    _weights(second.backbone) + _weights(second.teacher_dense)):
        np.testing.assert_array_equal(a, b)
    stages = json.loads((tmp_path / "second" / "stages.json").read_text())
    assert stages["teacher"]["copied_from"] == str(tmp_path / "first")
    mismatched = tiny_config(glue_dir)
    mismatched.teacher.learning_rate = 0.5
    mismatched.teacher_from = str(tmp_path / "first")
    with pytest.raises(UserInputError, match="other teacher"):
        _run(mismatched, tmp_path / "third")


def test_a_launch_that_trained_nothing_does_not_bind_the_folder(glue_dir, tmp_path):
    from msbert_tf.training.run_dir import RunDir

    run = RunDir(str(tmp_path / "run"))
    run.claim(tiny_config(glue_dir))  # e.g. then failed on a bad data file
    other = tiny_config(glue_dir)
    other.distill.loss = "kl"
    run.claim(other)
    assert '"loss": "kl"' in (tmp_path / "run" / "config.json").read_text()


def test_a_pair_task_trains_and_reports_its_metrics(glue_dir, tmp_path):
    from msbert_tf.inference.evaluation import evaluate, rules_for

    config = tiny_config(glue_dir)
    config.data.task = "mrpc"
    result = _run(config, tmp_path / "run")
    segments = result.dev_split.features["segment_ids"]
    # Packed as a pair: [CLS] a [SEP] b [SEP], the second segment marked 1.
    assert segments.max() == 1 and (segments[:, 0] == 0).all()
    report = evaluate(result.classifier, result.dev_split, rules_for("entropy"), 1.0,
                      timing_examples=0, metrics=result.task.metrics)
    assert report["dev"]["metric"] == "accuracy"
    assert set(report["dev"]["all"]) == {"accuracy", "f1"}
    assert report["sweep"][0]["metric"] == report["dev"]["teacher"]  # speed 0 runs the teacher
