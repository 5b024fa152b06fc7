import json
import os

import keras
import numpy as np
import pytest

from msbert_tf.errors import UserInputError
from msbert_tf.training import trainer
from msbert_tf.run_dir import completed_epochs
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
    # C_T's weights were trained on what its pooler read: [CLS] is not the mean.
    pooled = tiny_config(glue_dir)
    pooled.model.teacher_pooling = "mean"
    pooled.teacher_from = str(tmp_path / "first")
    with pytest.raises(UserInputError, match="model.teacher_pooling"):
        _run(pooled, tmp_path / "fourth")


def test_distill_seed_varies_stage_two_alone_on_one_teacher(glue_dir, tmp_path):
    _run(tiny_config(glue_dir), tmp_path / "teacher")

    def heads(folder, seed):
        config = tiny_config(glue_dir, seed=seed)
        config.teacher_from = str(tmp_path / "teacher")
        classifier = _run(config, tmp_path / folder).classifier
        return [w for head in classifier.exit_heads for w in _weights(head)]

    first, again, other = heads("a", 7), heads("b", 7), heads("c", 8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other, strict=True))


def test_a_launch_that_trained_nothing_does_not_bind_the_folder(glue_dir, tmp_path):
    from msbert_tf.run_dir import RunDir

    run = RunDir(str(tmp_path / "run"))
    run.claim(tiny_config(glue_dir))  # e.g. then failed on a bad data file
    other = tiny_config(glue_dir)
    other.distill.loss = "kl"
    run.claim(other)
    assert '"loss": "kl"' in (tmp_path / "run" / "config.json").read_text()


def test_a_pair_task_trains_reports_its_metrics_and_predicts_pairs(glue_dir, tmp_path):
    from msbert_tf.data import readers
    from msbert_tf.inference.early_exit import EarlyExitPredictor
    from msbert_tf.inference.evaluation import evaluate, rules_for
    from msbert_tf.inference.loading import load_run
    from msbert_tf.inference.predict import from_lines, predict_texts
    from msbert_tf.inference.uncertainty import ExitRule

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
    # Raw pairs (a tab between the texts, as on the command line) predict like the dev features.
    trained = load_run(str(tmp_path / "run"))
    dev = readers.read_split(result.task, "dev", glue_dir).take(6)
    rule = ExitRule("entropy", threshold=0.5)
    lines = [f"{a}\t{b}" for a, b in zip(dev.text_a, dev.text_b)]
    got = predict_texts(trained, from_lines(trained.task, lines), rule)
    want = EarlyExitPredictor(result.classifier).predict(
        {k: v[:6] for k, v in result.dev_split.features.items()}, rule
    )
    assert [g["exit_layer"] for g in got] == list(want.exit_layers)
    np.testing.assert_allclose([g["probabilities"] for g in got], want.probs, atol=1e-5)
    assert {g["label"] for g in got} <= set(result.task.label_names)
    for bad in (["one text only"], from_lines(trained.task, ["a\tb\tc"])):
        with pytest.raises(UserInputError, match=r"example 1 is .* classifies sentence pairs, give each example as two texts"):
            predict_texts(trained, bad, rule)
    with pytest.raises(UserInputError, match="the second text of example 1 is empty"):
        predict_texts(trained, [("fine", " ")], rule)


def test_a_nan_loss_stops_the_stage_and_keeps_the_last_good_checkpoint(glue_dir, tmp_path, monkeypatch):
    import keras
    import tensorflow as tf

    from msbert_tf.training.callbacks import TrainingDiverged

    class NaNFromStepFive(keras.losses.SparseCategoricalCrossentropy):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.steps = tf.Variable(0)

        def call(self, y_true, y_pred):
            self.steps.assign_add(1)
            return super().call(y_true, y_pred) * tf.where(self.steps >= 5, float("nan"), 1.0)

    monkeypatch.setattr(keras.losses, "SparseCategoricalCrossentropy", NaNFromStepFive)
    path = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"stage teacher: the loss became nan at step 5 \(batch 2 of part 2\)"):
        _run(tiny_config(glue_dir), path)
    # Part 1 (steps 1-3) is the kept checkpoint; nothing of the NaN part was saved.
    assert completed_epochs(str(path / "checkpoints" / "teacher")) == 1
    monkeypatch.undo()
    classifier = _run(tiny_config(glue_dir), path).classifier  # resumes from part 1
    assert all(np.isfinite(w).all() for w in _weights(classifier.backbone))


def test_mirrored_on_two_cpu_devices_matches_one_device(glue_dir, tmp_path):
    """Same global batch split over two replicas: same losses and weights."""
    import subprocess
    import sys

    code = f"""
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from msbert_tf.training import trainer
from tests.conftest import tiny_config
out = {{}}
for strategy in ("default", "mirrored"):
    config = tiny_config({glue_dir!r})
    config.jit_compile, config.model.dropout, config.strategy = False, 0.0, strategy
    result = trainer.train(config, {str(tmp_path)!r} + "/" + strategy, verbose=0)
    c = result.classifier
    out[strategy] = {{
        "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
        "losses": {{s: v["loss_per_part"] for s, v in result.stages.items()}},
        "weights": [w.numpy().ravel().tolist() for w in c.teacher_dense.weights + c.exit_heads[0].weights],
    }}
    if strategy == "mirrored":
        out["mirrored_replicas"] = trainer.make_strategy("mirrored").num_replicas_in_sync
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mirrored_replicas"] == 2
    one, two = out["default"], out["mirrored"]
    for stage in ("teacher", "distill"):
        np.testing.assert_allclose(one["losses"][stage], two["losses"][stage], rtol=1e-4)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_host_side_emd_solver_is_refused_under_a_strategy(glue_dir, tmp_path):
    config = tiny_config(glue_dir)
    config.strategy, config.distill.emd_solver = "mirrored", "exact"
    with pytest.raises(UserInputError, match="cannot run under strategy=mirrored"):
        _run(config, tmp_path / "run")
    assert not (tmp_path / "run" / "teacher.weights.h5").exists()


def test_an_empty_training_file_is_refused_not_trained_forever(glue_dir, tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\ngood\t1\n")
    config = tiny_config(str(tmp_path))
    with pytest.raises(UserInputError, match="the sst2 training data has no rows"):
        _run(config, tmp_path / "run")


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_previous_checkpoint(tmp_path):
    from msbert_tf.training.callbacks import StageBackupAndRestore

    def model():
        m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        m.compile(optimizer="sgd", loss="mse")
        return m

    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    folder = str(tmp_path / "checkpoints")
    first = model()
    first.fit(x, y, epochs=2, verbose=0, callbacks=[StageBackupAndRestore(folder, folder, delete_checkpoint=False)])
    assert completed_epochs(folder) == 2
    # What a kill after the first rename of the next save leaves behind.
    os.replace(folder, folder + ".old")
    os.makedirs(folder + ".saving")
    (tmp_path / "checkpoints.saving" / "latest.weights.h5").write_bytes(b"half written")
    assert completed_epochs(folder) == 2

    epochs_run = []
    second = model()
    second.fit(x, y, epochs=3, verbose=0, callbacks=[
        StageBackupAndRestore(folder, folder, delete_checkpoint=False),
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs_run.append(epoch)),
    ])
    assert epochs_run == [2]  # resumed after the 2 saved epochs
    assert completed_epochs(folder) == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoints"]



def test_a_checkpoint_with_other_random_states_is_refused_not_resumed_inexactly(tmp_path):
    from msbert_tf.training.callbacks import StageBackupAndRestore

    def model(dropouts):
        layers = [keras.Input((2,))] + [keras.layers.Dropout(0.5) for _ in range(dropouts)] + [keras.layers.Dense(1)]
        m = keras.Sequential(layers)
        m.compile(optimizer="sgd", loss="mse")
        return m

    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    folder = str(tmp_path / "checkpoints")
    model(1).fit(x, y, epochs=1, verbose=0, callbacks=[StageBackupAndRestore(folder, folder, delete_checkpoint=False)])
    with pytest.raises(UserInputError, match="holds 1 random-state.*this model has 2.*new --output_dir"):
        model(2).fit(x, y, epochs=2, verbose=0, callbacks=[StageBackupAndRestore(folder, folder, delete_checkpoint=False)])
