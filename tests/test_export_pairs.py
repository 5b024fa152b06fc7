"""Export of a sentence-pair task (MRPC) and of regression (STS-B, patience
rule): the LiteRT chain, its runner and the SavedModel against Keras."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from msbert_tf import MSBert
from msbert_tf.data.readers import read_split
from msbert_tf.export.bundle import MANIFEST, export_run
from msbert_tf.export.runner import LiteRTRunner
from msbert_tf.inference.early_exit import EarlyExitPredictor
from msbert_tf.inference.loading import load_run
from msbert_tf.inference.predict import predict_texts
from msbert_tf.inference.uncertainty import ExitRule
from tests.conftest import GLUE_DIR, tiny_config

THRESHOLDS = (0.0, 0.3, 0.6, 0.9, 1.0)


def _export(tmp_path_factory, task, rule):
    config = tiny_config(GLUE_DIR)
    config.data.task = task
    config.jit_compile = False
    config.model.random_backbone.num_layers = 3
    run_dir = str(tmp_path_factory.mktemp(task))
    MSBert(run_dir, config=config).fit(verbose=0)
    trained = load_run(run_dir)
    out = str(tmp_path_factory.mktemp(f"{task}_export"))
    export_run(trained, out, rule=rule)
    dev = read_split(trained.task, "dev", GLUE_DIR).take(30)
    return trained, out, list(zip(dev.text_a, dev.text_b))


@pytest.fixture(scope="module")
def mrpc(tmp_path_factory):
    return _export(tmp_path_factory, "mrpc", ExitRule("entropy", 0.5))


@pytest.fixture(scope="module")
def stsb(tmp_path_factory):
    return _export(tmp_path_factory, "stsb", ExitRule("patience", patience=1, tolerance=0.2))


def test_pair_runner_packs_pairs_as_the_trainer_does(mrpc):
    trained, out, pairs = mrpc
    runner = LiteRTRunner(os.path.join(out, "tflite_none"))
    cut = 0
    for a, b in pairs:
        ids = runner.encode(a, b)
        width = ids["token_ids"].shape[1]
        want = {k: np.asarray(v) for k, v in trained.preprocessor(x=([a], [b])).items()}
        cut += width == trained.config.data.max_seq_length
        for key in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(ids[key], want[key][:, :width], err_msg=key)
        assert want["padding_mask"][0, width:].sum() == 0  # nothing left out
    assert cut > 5  # the round-robin truncation was really exercised


def test_pair_chain_matches_keras_across_thresholds(mrpc):
    trained, out, pairs = mrpc
    runner = LiteRTRunner(os.path.join(out, "tflite_none"))
    predictor = EarlyExitPredictor(trained.classifier)
    seen = set()
    for a, b in pairs:
        ids = runner.encode(a, b)
        for threshold in THRESHOLDS:
            got = runner.classify_ids(ids, threshold)
            want = predictor.predict(ids, ExitRule("entropy", threshold))
            assert (got["exit_layer"], got["label_id"]) == (want.exit_layers[0], want.labels[0])
            np.testing.assert_allclose(got["probabilities"], want.probs[0], atol=1e-4)
            seen.add(got["exit_layer"])
    assert len(seen) > 1
    with pytest.raises(Exception, match="takes text and text_pair"):
        runner.encode("only one text")


def test_pair_saved_model_equals_predict(mrpc):
    trained, out, pairs = mrpc
    model = tf.saved_model.load(os.path.join(out, "saved_model"))
    a, b = (tf.constant([p[i] for p in pairs]) for i in (0, 1))
    for threshold in (0.0, 0.6):
        got = model.signatures["classify"](text=a, text_pair=b, threshold=tf.constant(threshold, tf.float64))
        want = predict_texts(trained, pairs, ExitRule("entropy", threshold))
        assert got["exit_layer"].numpy().tolist() == [w["exit_layer"] for w in want]
        np.testing.assert_allclose(got["probabilities"].numpy(), [w["probabilities"] for w in want], atol=1e-5)
    default = model.signatures["serving_default"](text=a, text_pair=b)
    assert default["exit_layer"].numpy().tolist() == [w["exit_layer"] for w in predict_texts(
        trained, pairs, ExitRule("entropy", 0.5))]


def test_regression_chain_decides_by_patience_like_keras(stsb):
    trained, out, pairs = stsb
    runner = LiteRTRunner(os.path.join(out, "tflite_none"))
    manifest = json.loads(open(os.path.join(out, "tflite_none", MANIFEST)).read())
    assert manifest["output"] == "value" and manifest["inputs"] == ["text", "text_pair"]
    assert manifest["exit_rule"]["patience"] == 1 and manifest["exit_rule"]["tolerance"] == 0.2
    assert manifest["tokenizer"]["truncation"] == "round_robin"
    predictor = EarlyExitPredictor(trained.classifier)
    seen = set()
    for a, b in pairs:
        ids = runner.encode(a, b)
        for patience, tolerance in ((1, 0.2), (1, 5.0), (2, 5.0), (3, 0.0)):
            rule = ExitRule("patience", patience=patience, tolerance=tolerance)
            runner.rule = rule
            got = runner.classify_ids(ids)
            want = predictor.predict(ids, rule)
            assert got["exit_layer"] == want.exit_layers[0], (patience, tolerance)
            np.testing.assert_allclose(got["value"], want.probs[0, 0], atol=1e-4)
            seen.add(got["exit_layer"])
    assert seen == {2, 3}  # patience exits after layer 2 at the earliest, and not always


def test_regression_saved_model_takes_patience_and_returns_values(stsb):
    trained, out, pairs = stsb
    model = tf.saved_model.load(os.path.join(out, "saved_model"))
    a, b = (tf.constant([p[i] for p in pairs]) for i in (0, 1))
    for patience in (1, 2):
        got = model.signatures["classify"](text=a, text_pair=b, patience=tf.constant(patience))
        assert set(got) == {"value", "exit_layer"}
        want = predict_texts(trained, pairs, ExitRule("patience", patience=patience, tolerance=0.2))
        assert got["exit_layer"].numpy().tolist() == [w["exit_layer"] for w in want]
        np.testing.assert_allclose(got["value"].numpy(), [w["label"] for w in want], atol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="patience must be at least 1"):
        model.signatures["classify"](text=a, text_pair=b, patience=tf.constant(0))
