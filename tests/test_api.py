import json
import os

import numpy as np
import pytest

from msbert_tf import MSBert
from msbert_tf.errors import UserInputError
from msbert_tf.inference.early_exit import simulate
from msbert_tf.inference.uncertainty import ExitRule
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from msbert_tf.data.readers import read_split
    from msbert_tf.data.tasks import get_task
    from tests.conftest import GLUE_DIR

    config = tiny_config(GLUE_DIR)
    config.jit_compile = False
    model = MSBert(str(tmp_path_factory.mktemp("run")), config=config).fit(verbose=0)
    dev = read_split(get_task("sst2"), "dev", GLUE_DIR).take(24)
    return model, dev


def test_five_line_api_predicts_like_the_simulator(trained):
    import keras

    from msbert_tf.data import pipeline

    model, dev = trained
    # Predict's final prediction is the one calibration chose (the mean of the last `final_exits` exits).
    rule = ExitRule("entropy", threshold=0.9, final_exits=model.calibration["final_exits"])
    got = model.predict(dev.text_a, threshold=0.9)
    split = pipeline.encode(dev, model._trained.preprocessor)
    logits = np.concatenate(
        [np.asarray(model._trained.classifier(x)) for x, _ in pipeline.eval_dataset(split, 8)]
    )
    expected = simulate(np.asarray(keras.ops.softmax(logits, axis=-1)), rule)
    assert [r["exit_layer"] for r in got] == expected.exit_layers.tolist()
    assert [r["label"] for r in got] == [str(v) for v in expected.labels]


def test_reload_gives_the_same_predictions(trained):
    model, dev = trained
    again = MSBert.load(model.output_dir)
    # `speed`, the threshold's earlier name, still works; both at once are refused.
    assert again.predict(dev.text_a[:5], speed=0.5) == model.predict(dev.text_a[:5], threshold=0.5)
    with pytest.raises(UserInputError, match="speed is the earlier name of threshold: give one of them"):
        model.predict(dev.text_a[:5], threshold=0.5, speed=0.5)


@pytest.mark.parametrize(
    "texts, speed, message",
    [
        (["fine", "   "], 0.2, "text 2 is empty"),
        (["fine"], 1.5, r"in \[0, 1\]"),
        ([("fine", "film")], 0.2, "task sst2 takes one text per example, not pairs"),
    ],
)
def test_bad_prediction_input(trained, texts, speed, message):
    with pytest.raises(UserInputError, match=message):
        trained[0].predict(texts, threshold=speed)


def test_overlong_text_is_truncated_not_refused(trained, caplog):
    model, _ = trained
    (result,) = model.predict([" ".join(["word"] * 5000)])
    assert 1 <= result["exit_layer"] <= 2
    assert "1 of 1 text(s) are longer than 32 tokens: each was cut to its first 32" in caplog.text
    caplog.clear()
    model.predict(["short"])
    assert "longer than" not in caplog.text


def test_unknown_or_ambiguous_fields():
    with pytest.raises(UserInputError, match="'epochs' names a field of several sections: use a dotted name"):
        MSBert("/tmp/x", epochs=3)
    with pytest.raises(UserInputError, match="'colour' names no"):
        MSBert("/tmp/x", colour="red")
    with pytest.raises(UserInputError, match="'distill.colour' names no"):
        MSBert("/tmp/x", **{"distill.colour": 1})
    assert MSBert("/tmp/x", head="mlp", task="sst2").config.model.head == "mlp"
    both = MSBert("/tmp/x", seed=3, **{"distill.seed": 4, "teacher.epochs": 0.5}).config
    assert (both.seed, both.distill.seed, both.teacher.epochs, both.distill.epochs) == (3, 4, 0.5, 2.0)


def test_predict_cli_prints_json_lines(trained, tmp_path):
    import subprocess
    import sys

    model, _ = trained
    done = subprocess.run(
        [sys.executable, "-m", "msbert_tf.predict", f"--run_dir={model.output_dir}", "--threshold=0.4",
         "a gripping film", "dull"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [line["text"] for line in lines] == ["a gripping film", "dull"]
    assert lines == [dict(text=t, **r) for t, r in zip(["a gripping film", "dull"], model.predict(["a gripping film", "dull"], threshold=0.4))]


def test_top_k_zero_is_refused_not_replaced(trained):
    with pytest.raises(UserInputError, match="top_k must be between 2"):
        trained[0].predict(["fine"], threshold=0.2, uncertainty="topk", top_k=0)


def test_custom_data_end_to_end_maps_ids_back_to_names(tmp_path):
    import csv

    from msbert_tf.data.readers import read_split
    from msbert_tf.data.tasks import get_task
    from tests.conftest import GLUE_DIR

    rows = read_split(get_task("sst2"), "train", GLUE_DIR).take(64)
    names = ("negative", "positive")
    for split in ("train", "dev"):
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["review", "sentiment"])
            writer.writerows((t, names[y]) for t, y in zip(rows.text_a, rows.labels))
    config = tiny_config(GLUE_DIR)
    config.jit_compile = False
    run_dir = str(tmp_path / "run")
    MSBert(run_dir, config=config, task="custom", train_file=str(tmp_path / "train.csv"),
           dev_file=str(tmp_path / "dev.csv"), text_column="review", label_column="sentiment").fit(verbose=0)
    with open(tmp_path / "run" / "config.json") as f:
        assert json.load(f)["data"]["label_names"] == list(names)
    out = MSBert.load(run_dir).predict(["a gripping film", "dull"], threshold=0.0)
    assert {o["label"] for o in out} <= set(names) and len(out) == 2


def test_a_folder_that_holds_a_run_continues_with_its_config(trained):
    """The README's order: train with the CLI (any preset), then MSBert on the
    same folder; fit() finds both stages done instead of refusing the config."""
    model, dev = trained
    again = MSBert(model.output_dir)
    assert again.config == model.config
    assert again.fit(verbose=0).predict(dev.text_a[:3], threshold=0.5) == model.predict(dev.text_a[:3], threshold=0.5)


def test_evaluate_and_export_do_what_their_commands_do(trained, tmp_path):
    import subprocess
    import sys

    from msbert_tf.export.runner import LiteRTRunner
    from tests.conftest import GLUE_DIR

    model, dev = trained
    data_file = f"{GLUE_DIR}/SST-2/dev.tsv"
    result = model.evaluate(data_file, thresholds=[0.0, 0.5, 1.0], max_examples=40, timing_examples=0,
                            output=str(tmp_path / "eval" / "dev.json"))
    assert result["examples"] == 40 and [p["threshold"] for p in result["sweep"]] == [0.0, 0.5, 1.0]
    # Speed 0 runs every layer and its heads: a little dearer than the teacher alone.
    assert result["sweep"][0]["flops_speedup"] < 1.0 < result["sweep"][-1]["flops_speedup"]
    done = subprocess.run(
        [sys.executable, "-m", "msbert_tf.evaluate", f"--run_dir={model.output_dir}", f"--data_file={data_file}",
         "--speeds=0,0.5,1", "--max_examples=40", "--timing_examples=0", f"--output={tmp_path / 'cli.json'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "cli.json").read_text())["sweep"] == json.loads(
        (tmp_path / "eval" / "dev.json").read_text())["sweep"]
    with pytest.raises(UserInputError, match="patience rule sweeps every patience"):
        model.evaluate(data_file, uncertainty="patience", thresholds=[0.5])
    (path,) = model.export(str(tmp_path / "export"), formats=("tflite",), threshold=0.5)
    runner = LiteRTRunner(path)
    assert runner.rule.threshold == 0.5
    assert [runner.classify(t)["label"] for t in dev.text_a[:5]] == [
        r["label"] for r in model.predict(list(dev.text_a[:5]), threshold=0.5)]


def test_presets_by_name():
    from msbert_tf import RunConfig

    model = MSBert.from_preset("trec6", "unused_folder", seed=7)
    assert model.config.data.task == "trec6" and model.config.seed == 7
    assert RunConfig.from_preset("sst2") == RunConfig.from_file("configs/sst2.json")
    with pytest.raises(UserInputError, match="no preset named 'sst3': choose from .*sst2"):
        RunConfig.from_preset("sst3")


def test_distill_trains_other_heads_on_the_same_teacher(trained, tmp_path):
    model, dev = trained
    other = model.distill(str(tmp_path / "kl"), verbose=0, loss="kl", **{"distill.seed": 5})
    assert other.config.distill.loss == "kl" and other.config.teacher_from == os.path.abspath(model.output_dir)
    first, second = model._trained.classifier, other._trained.classifier
    for a, b in zip(first.backbone.weights + first.teacher_dense.weights,
                    second.backbone.weights + second.teacher_dense.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.allclose(np.asarray(first.exit_heads[0].weights[0]), np.asarray(second.exit_heads[0].weights[0]))
    assert other.calibration is not None and model.config.distill.loss == "emd"
    with pytest.raises(UserInputError, match="was trained with other teacher"):
        model.distill(str(tmp_path / "lr"), verbose=0, **{"teacher.learning_rate": 0.5})
    assert not (tmp_path / "lr").exists()  # refused before the run folder was made
