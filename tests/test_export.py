"""Export: per-stage LiteRT chain and SavedModel, compared number by number with Keras."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from msbert_tf import MSBert
from msbert_tf.errors import UserInputError
from msbert_tf.export.bundle import MANIFEST, export_run
from msbert_tf.export.runner import LiteRTRunner
from msbert_tf.inference.early_exit import EarlyExitPredictor
from msbert_tf.inference.loading import load_run
from msbert_tf.inference.uncertainty import ExitRule
from tests.conftest import GLUE_DIR, tiny_config

THRESHOLDS = (0.0, 0.2, 0.5, 0.8, 0.95, 1.0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from msbert_tf.data.readers import read_split
    from msbert_tf.data.tasks import get_task

    config = tiny_config(GLUE_DIR)
    config.jit_compile = False
    config.model.random_backbone.num_layers = 3
    run_dir = str(tmp_path_factory.mktemp("run"))
    MSBert(run_dir, config=config).fit(verbose=0)
    trained = load_run(run_dir)
    out = str(tmp_path_factory.mktemp("export"))
    export_run(trained, out, quantize=("none", "dynamic", "float16"), rule=ExitRule("entropy", 0.5))
    dev = read_split(get_task("sst2"), "dev", GLUE_DIR).take(40)
    return trained, out, dev


def test_float_chain_matches_keras_across_thresholds(exported):
    trained, out, dev = exported
    runner = LiteRTRunner(os.path.join(out, "tflite_none"))
    predictor = EarlyExitPredictor(trained.classifier)
    seen_layers = set()
    for text in dev.text_a:
        ids = runner.encode(text)
        # The same ids the training pipeline makes, unpadded.
        keras_ids = {k: np.asarray(v)[:, : ids["token_ids"].shape[1]] for k, v in trained.preprocessor([text]).items()}
        np.testing.assert_array_equal(ids["token_ids"], keras_ids["token_ids"])
        for threshold in THRESHOLDS:
            got = runner.classify_ids(ids, threshold)
            want = predictor.predict(ids, ExitRule("entropy", threshold))
            assert got["exit_layer"] == want.exit_layers[0]
            assert got["label_id"] == want.labels[0]
            np.testing.assert_allclose(got["probabilities"], want.probs[0], atol=1e-4)
            seen_layers.add(got["exit_layer"])
    assert len(seen_layers) > 1  # the sweep really exits at different layers


def test_quantized_bundles_are_smaller_and_agree_mostly(exported):
    trained, out, dev = exported

    def size(name):
        folder = os.path.join(out, name)
        return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".tflite"))

    assert size("tflite_dynamic") < 0.45 * size("tflite_none")
    assert size("tflite_float16") < 0.65 * size("tflite_none")
    full = LiteRTRunner(os.path.join(out, "tflite_none"))
    for name in ("tflite_dynamic", "tflite_float16"):
        runner = LiteRTRunner(os.path.join(out, name))
        same = [runner.classify(t, 0.0)["label_id"] == full.classify(t, 0.0)["label_id"] for t in dev.text_a]
        assert np.mean(same) >= 0.8, name


def test_manifest_describes_the_chain(exported):
    trained, out, _ = exported
    with open(os.path.join(out, "tflite_none", MANIFEST)) as f:
        manifest = json.load(f)
    assert [s["file"] for s in manifest["stages"]] == ["stage_1.tflite", "stage_2.tflite", "stage_3.tflite"]
    assert set(manifest["stages"][0]["inputs"]) == {"token_ids", "segment_ids", "padding_mask"}
    assert set(manifest["stages"][1]["inputs"]) == {"hidden_in", "padding_mask"}
    assert set(manifest["stages"][2]["outputs"]) == {"probabilities"}
    assert manifest["stages"][1]["inputs"]["hidden_in"]["shape"] == [1, -1, trained.classifier.backbone.hidden_dim]
    assert manifest["exit_rule"] == {"uncertainty": "entropy", "top_k": 2, "threshold": 0.5, "final_exits": 1}
    assert manifest["tokenizer"]["strip_accents"] is True


def test_runner_rejects_a_damaged_bundle(exported, tmp_path):
    import shutil

    _, out, _ = exported
    copy = tmp_path / "bundle"
    shutil.copytree(os.path.join(out, "tflite_none"), copy)
    with open(copy / "stage_2.tflite", "r+b") as f:
        f.seek(1000)
        f.write(b"\0\1\2\3")
    with pytest.raises(UserInputError, match="stage_2.tflite .*checksum"):
        LiteRTRunner(str(copy))
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["sha256"]["stage_2.tflite"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserInputError, match=r"no checksum for \['stage_2.tflite'\]"):
        LiteRTRunner(str(copy))


def test_a_bundle_written_before_pair_export_still_runs(exported, tmp_path):
    import shutil

    _, out, dev = exported
    copy = tmp_path / "old"
    shutil.copytree(os.path.join(out, "tflite_none"), copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    del manifest["inputs"], manifest["output"]
    (copy / MANIFEST).write_text(json.dumps(manifest))
    new = LiteRTRunner(os.path.join(out, "tflite_none"))
    assert LiteRTRunner(str(copy)).classify(dev.text_a[0]) == new.classify(dev.text_a[0])


def test_runner_refuses_a_manifest_that_does_not_describe_its_graphs(exported, tmp_path):
    import shutil

    _, out, _ = exported
    for name, edit, message in (
        ("hidden", lambda m: m["stages"][1]["inputs"]["hidden_in"].update(shape=[-1, -1, 999]),
         "stage_2.tflite: its inputs .* are not the manifest's"),
        ("output", lambda m: m.update(output="value"), "stage_1.tflite has no output 'value'"),
    ):
        copy = tmp_path / name
        shutil.copytree(os.path.join(out, "tflite_none"), copy)
        manifest = json.loads((copy / MANIFEST).read_text())
        edit(manifest)
        (copy / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(UserInputError, match=message):
            LiteRTRunner(str(copy))


def test_saved_model_in_a_fresh_process_equals_the_python_predictor(exported):
    from msbert_tf.inference.predict import predict_texts

    trained, out, dev = exported
    texts = list(dev.text_a[:16])
    code = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({os.path.join(out, 'saved_model')!r})\n"
        "texts = json.loads(sys.stdin.read())\n"
        "res = {}\n"
        "for t in (0.0, 0.5, 0.9):\n"
        "    o = m.signatures['classify'](text=tf.constant(texts), threshold=tf.constant(t, tf.float64))\n"
        "    res[t] = {k: v.numpy().tolist() for k, v in o.items() if k != 'label'}\n"
        "o = m.signatures['serving_default'](text=tf.constant(texts))\n"
        "res['default'] = o['exit_layer'].numpy().tolist()\n"
        "try:\n"
        "    m.signatures['classify'](text=tf.constant(texts), threshold=tf.constant(1.5, tf.float64))\n"
        "    res['out_of_range'] = 'accepted'\n"
        "except tf.errors.InvalidArgumentError as e:\n"
        "    res['out_of_range'] = 'threshold must be in [0, 1]' in str(e)\n"
        "print(json.dumps({'modules': sorted(k for k in sys.modules if k.split('.')[0] in ('keras_hub', 'msbert_tf')), 'res': res}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    # Only tensorflow and tensorflow_text were needed (tensorflow itself imports keras).
    assert got["modules"] == []
    for t in ("0.0", "0.5", "0.9"):
        want = predict_texts(trained, texts, ExitRule("entropy", float(t)))
        assert got["res"][t]["exit_layer"] == [w["exit_layer"] for w in want]
        assert got["res"][t]["label_id"] == [int(w["label"]) for w in want]
        np.testing.assert_allclose(got["res"][t]["probabilities"], [w["probabilities"] for w in want], atol=1e-5)
    assert got["res"]["default"] == got["res"]["0.5"]["exit_layer"]
    assert got["res"]["out_of_range"] is True


def test_saved_model_cli_lists_the_signatures(exported):
    _, out, _ = exported
    done = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all", "--dir", os.path.join(out, "saved_model")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("serving_default", "classify", "classify_ids"):
        assert f"signature_def['{name}']" in done.stdout


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quantize": ("int4",)}, "unknown quantization 'int4'"),
        ({"max_seq_length": 100000}, "max_seq_length=100000 is outside"),
        ({"formats": ("onnx",)}, "unknown export format 'onnx'"),
        ({"rule": ExitRule("entropy", 1.5)}, r"must be in \[0, 1\], got 1.5"),
    ],
)
def test_bad_export_requests(exported, tmp_path, kwargs, message):
    trained, _, _ = exported
    with pytest.raises(UserInputError, match=message):
        export_run(trained, str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_export_cli_refuses_a_run_without_heads(tmp_path):
    os.makedirs(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(json.dumps(tiny_config(GLUE_DIR).to_dict()))
    done = subprocess.run(
        [sys.executable, "-m", "msbert_tf.export", f"--run_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    assert "has no trained exit heads" in done.stderr


def test_a_deeper_attention_head_converts_with_its_numbers(tmp_path):
    """Its keras-hub transformer block lands in the stage graph with its weights (FINDINGS 8's trap)."""
    from msbert_tf.config import ModelConfig
    from msbert_tf.export import litert
    from msbert_tf.export.stages import stage_model
    from msbert_tf.models.backbone import load_backbone
    from msbert_tf.models.classifier import MSBertClassifier

    backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    classifier = MSBertClassifier(backbone, num_labels=2, head="attention", head_dim=8, head_depth=2)
    classifier.build()
    stage = stage_model(classifier, 0)
    path = litert.write_litert(stage, str(tmp_path / "stage_1.tflite"))
    runner = litert.interpreter(path).get_signature_runner()
    # 6 tokens and 2 of padding: the block's mask must survive the conversion.
    inputs = {k: np.asarray(v, np.int32)[:, :8] for k, v in preprocessor(["a deep exit head"]).items()}
    assert inputs["padding_mask"].tolist() == [[1] * 6 + [0] * 2]
    got = runner(**inputs)
    want = stage(inputs)
    assert np.isfinite(got["probabilities"]).all()
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    np.testing.assert_allclose(got["hidden"], want["hidden"], atol=1e-4)


def test_a_full_disk_during_export_leaves_no_bundle_and_keeps_the_old_one(exported, tmp_path, monkeypatch):
    import errno

    from msbert_tf.export import litert

    trained, out, _ = exported
    before = sorted(os.listdir(os.path.join(out, "tflite_none")))
    real = litert.write_litert
    calls = []

    def fills_up(model, path, quantize, samples=None):
        calls.append(path)
        if len(calls) == 2:  # the disk fills while stage 2 is written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, path, quantize, samples)

    monkeypatch.setattr(litert, "write_litert", fills_up)
    with pytest.raises(UserInputError, match="No space left on device.*then export again"):
        export_run(trained, out, formats=("tflite",), rule=ExitRule("entropy", 0.5))
    # The earlier bundle is untouched and nothing half-written is left beside it.
    assert sorted(os.listdir(os.path.join(out, "tflite_none"))) == before
    assert not [name for name in os.listdir(out) if name.endswith(".partial")]
    fresh = tmp_path / "fresh"
    with pytest.raises(UserInputError, match="No space left"):
        calls.clear()
        export_run(trained, str(fresh), formats=("tflite",), rule=ExitRule("entropy", 0.5))
    assert os.listdir(fresh) == []


def test_learned_rule_bundle_decides_like_keras(exported, tmp_path):
    """The learned rule's coefficients travel in the manifest; the reference
    runner's exits and labels equal the Keras early-exit path's."""
    import dataclasses

    from msbert_tf.data import pipeline
    from msbert_tf.export.runner import LiteRTRunner
    from msbert_tf.inference.early_exit import EarlyExitPredictor

    trained, _, dev = exported
    weights = tuple(map(tuple, np.random.default_rng(2).normal(size=(2, 8)).tolist()))
    rule = ExitRule("learned", 0.5, weights=weights)
    (path,) = export_run(trained, str(tmp_path / "out"), formats=("tflite",), rule=rule)
    runner = LiteRTRunner(path)
    assert runner.rule.weights == weights
    split = pipeline.encode(dev, trained.preprocessor)
    predictor = EarlyExitPredictor(trained.classifier)
    exits = []
    for speed in (0.3, 0.6):
        for i in range(len(dev)):
            ids = {k: v[i:i + 1][:, : int(split.lengths[i])] for k, v in split.features.items()}
            want = predictor.predict(ids, dataclasses.replace(rule, threshold=speed))
            got = runner.classify_ids(ids, threshold=speed)
            assert (got["exit_layer"], got["label_id"]) == (int(want.exit_layers[0]), int(want.labels[0]))
            exits.append(got["exit_layer"])
    assert len(set(exits)) > 1  # the decisions really vary


def test_learned_rule_saved_model_decides_like_predict(exported, tmp_path):
    import tensorflow as tf

    from msbert_tf.inference.predict import predict_texts

    trained, _, dev = exported
    weights = tuple(map(tuple, np.random.default_rng(2).normal(size=(2, 8)).tolist()))
    rule = ExitRule("learned", 0.5, weights=weights)
    (path,) = export_run(trained, str(tmp_path / "out"), formats=("saved_model",), rule=rule)
    served = tf.saved_model.load(path)
    texts = list(dev.text_a[:16])
    for t in (0.3, 0.6):
        got = served.signatures["classify"](text=tf.constant(texts), threshold=tf.constant(t, tf.float64))
        want = predict_texts(trained, texts, ExitRule("learned", t, weights=weights))
        assert got["exit_layer"].numpy().tolist() == [w["exit_layer"] for w in want]
        assert got["label_id"].numpy().tolist() == [int(w["label"]) for w in want]


def test_first_layers_models_give_the_classifiers_exits():
    """The static baselines of the latency benchmark: the first k layers and
    exit k in one graph, numbers equal to the classifier's exit k."""
    import keras

    from msbert_tf.config import ModelConfig
    from msbert_tf.export.stages import first_layers_model, full_model
    from msbert_tf.models.backbone import load_backbone
    from msbert_tf.models.classifier import MSBertClassifier

    backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    classifier = MSBertClassifier(backbone, num_labels=3, head="attention", head_dim=8)
    inputs = {k: np.asarray(v, np.int32) for k, v in preprocessor(["a short one", "and a longer second text"]).items()}
    want = np.asarray(keras.ops.softmax(classifier(inputs), axis=-1))
    # One example at a time, padded: the graphs take one, and must mask its padding.
    for row in range(2):
        example = {k: v[row : row + 1] for k, v in inputs.items()}
        for count in range(1, classifier.num_layers + 1):
            got = first_layers_model(classifier, count)(example)["probabilities"]
            np.testing.assert_allclose(got[0], want[row, count - 1], atol=1e-6)
        np.testing.assert_allclose(full_model(classifier)(example)["probabilities"][0], want[row, -1], atol=1e-6)


def test_stage_graphs_run_as_one_xnnpack_piece(exported):
    """One example a graph, reshapes of constant shape, the exit head's
    products batched: no op works out a tensor's shape (Keras' own layers
    left 9 a stage) or falls outside XNNPACK (an EXPAND_DIMS, a slice that
    drops an axis), so XNNPACK takes a stage whole, not in pieces with
    LiteRT's kernels between."""
    from ai_edge_litert.interpreter import Interpreter

    _, out, _ = exported
    for name in ("tflite_none", "tflite_dynamic"):
        folder = os.path.join(out, name)
        manifest = json.load(open(os.path.join(folder, MANIFEST)))
        for entry in manifest["stages"][1:]:
            interpreter = Interpreter(os.path.join(folder, entry["file"]))
            interpreter.allocate_tensors()
            ops = [op["op_name"] for op in interpreter._get_ops_details()]
            assert ops.count("DELEGATE") == 1, (name, entry["file"], ops)
            assert "FULLY_CONNECTED" in ops and "SHAPE" not in ops, (name, entry["file"])


def test_a_stage_gives_a_signature_runners_numbers_at_every_length(exported):
    """Stage, back and forth between lengths, equals a fresh signature runner,
    and names the inputs it takes when given others, or two examples."""
    from msbert_tf.errors import UserInputError
    from msbert_tf.export import litert
    from msbert_tf.export.runner import Stage

    trained, out, dev = exported
    path = os.path.join(out, "tflite_none", "stage_2.tflite")
    stage = Stage(path)
    rng = np.random.default_rng(0)
    for length in (7, 7, 3, 7):
        feed = {"hidden_in": rng.normal(size=(1, length, trained.classifier.backbone.hidden_dim)).astype(np.float32),
                "padding_mask": np.ones((1, length), np.int32)}
        want = litert.interpreter(path).get_signature_runner()(**feed)
        got = stage(**feed)
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
    with pytest.raises(UserInputError, match="hidden_in"):
        stage(token_ids=np.ones((1, 3), np.int32), padding_mask=np.ones((1, 3), np.int32))
    two = {name: np.concatenate([value, value]) for name, value in feed.items()}
    with pytest.raises(UserInputError, match=r"shape \[1, -1, \d+\].*one example at a time"):
        stage(**two)


def test_a_final_mean_of_the_last_exits_is_the_same_in_keras_litert_and_the_saved_model(exported, tmp_path):
    """`final_exits` travels in the manifest and the SavedModel: inputs that
    run every stage are labelled by the mean of the last exits alike."""
    import tensorflow as tf

    from msbert_tf.data import pipeline

    trained, _, dev = exported
    rule = ExitRule("entropy", 0.0, final_exits=2)
    lite, served = export_run(trained, str(tmp_path / "out"), formats=("tflite", "saved_model"), rule=rule)
    runner = LiteRTRunner(lite)
    assert runner.rule.final_exits == 2
    split = pipeline.encode(dev, trained.preprocessor)
    alone = EarlyExitPredictor(trained.classifier).predict(split.features, ExitRule("entropy", 0.0))
    want = EarlyExitPredictor(trained.classifier).predict(split.features, rule)
    assert not np.allclose(want.probs, alone.probs, atol=1e-3)  # the mean really differs from the last exit
    for i in range(len(dev)):
        got = runner.classify_ids({k: v[i:i + 1][:, : int(split.lengths[i])] for k, v in split.features.items()})
        np.testing.assert_allclose(got["probabilities"], want.probs[i], atol=1e-4)
    texts = list(dev.text_a)
    model = tf.saved_model.load(served)
    np.testing.assert_allclose(model.signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy(),
                               want.probs, atol=1e-5)


def test_int8_bundle_takes_int8_into_its_matrix_products_and_stays_near_keras(exported, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from msbert_tf.data.readers import read_split
    from msbert_tf.data.tasks import get_task

    trained, _, dev = exported
    rows = tmp_path / "rows.txt"  # dev sentences after the 40 read below
    rows.write_text("".join(f"{t}\n" for t in read_split(get_task("sst2"), "dev", GLUE_DIR).text_a[40:]))
    out = MSBert.load(trained.run.path).export(str(tmp_path), formats=("tflite",), quantize=("int8",),
                                               threshold=0.0, representative_file=str(rows))
    folder = out[0]
    for entry in json.load(open(os.path.join(folder, MANIFEST)))["stages"]:
        graph = Interpreter(os.path.join(folder, entry["file"]))
        dtypes = {t["index"]: t["dtype"] for t in graph.get_tensor_details()}
        ops = graph._get_ops_details()
        matmuls = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
        assert matmuls and all(dtypes[i] == np.int8 for op in matmuls for i in op["inputs"][:2]), entry["file"]
        # What int8 would cost accuracy stays in float.
        assert all(dtypes[op["outputs"][0]] == np.float32 for op in ops if op["op_name"] == "SOFTMAX")
    # On sentences the calibration did not see.
    assert 0 < _largest_hidden_error(trained, folder, dev.text_a[:20]) < 0.02


def _largest_hidden_error(trained, folder, texts):
    """The largest relative RMS difference between a bundle's stages 1 and 2
    and Keras' in their hidden states: the tiny model's probabilities hardly
    move between sentences, its hidden states do."""
    from msbert_tf.export import stages
    from msbert_tf.export.runner import Stage

    runner, errors = LiteRTRunner(folder), []
    first = stages.stage_model(trained.classifier, 0)
    for index in range(2):
        graph, model = Stage(os.path.join(folder, f"stage_{index + 1}.tflite")), stages.stage_model(trained.classifier, index)
        for text in texts:
            ids = runner.encode(text)
            feed = ids if index == 0 else {"hidden_in": np.asarray(first(ids)["hidden"]), "padding_mask": ids["padding_mask"]}
            got, want = graph(**feed)["hidden"], np.asarray(model(feed)["hidden"])
            errors.append(np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)))
    return max(errors)


# Measured on the tiny model: 0.0034 dynamic, 0.0004 float16, 0.0066 int8.
@pytest.mark.parametrize("name, bound", [("tflite_dynamic", 0.01), ("tflite_float16", 0.0015)])
def test_quantized_stages_stay_near_keras_in_numbers(exported, name, bound):
    trained, out, dev = exported
    assert 0 < _largest_hidden_error(trained, os.path.join(out, name), dev.text_a[:20]) < bound


def test_int8_export_without_rows_is_refused(exported, tmp_path, monkeypatch):
    trained, _, _ = exported
    empty = tmp_path / "none.txt"
    empty.write_text("")
    with pytest.raises(UserInputError, match="int8 export calibrates on sentences"):
        MSBert.load(trained.run.path).export(str(tmp_path / "out"), formats=("tflite",), quantize=("int8",),
                                             representative_file=str(empty))
    # A run whose training data is not where it was: the way out is named.
    monkeypatch.setattr(trained.config.data, "data_dir", str(tmp_path / "moved"))
    with pytest.raises(UserInputError, match="training rows, which cannot be read here.*--representative_file"):
        export_run(trained, str(tmp_path / "out"), formats=("tflite",), quantize=("int8",))


def test_a_quantized_bundle_certifies_the_runs_threshold_on_its_own_outputs(exported, tmp_path, monkeypatch, caplog):
    import shutil

    from msbert_tf.inference.calibration import calibrate_run

    trained, _, _ = exported
    run = str(tmp_path / "run")
    shutil.copytree(trained.run.path, run)
    rows = os.path.join(GLUE_DIR, "SST-2", "dev.tsv")
    record = calibrate_run(run, data_file=rows, uncertainty="entropy", final_exits=(1,))
    assert record["certified"]
    copy = load_run(run)
    folder = export_run(copy, str(tmp_path / "out"), formats=("tflite",), quantize=("dynamic",))[0]
    manifest = json.load(open(os.path.join(folder, MANIFEST)))
    certificate = manifest["certificate"]
    assert certificate["rows"] == rows and certificate["calibration_rows"] == record["calibration_rows"]
    assert certificate["float_model_threshold"] == record["threshold"]
    assert manifest["exit_rule"]["threshold"] == certificate["threshold"]
    # What it measured is this bundle's disagreement with its own final on those rows.
    from msbert_tf.data.readers import read_file
    from msbert_tf.data.tasks import get_task

    runner = LiteRTRunner(folder)
    texts = read_file(get_task("sst2"), rows).text_a
    early = [runner.classify(t)["label_id"] for t in texts]
    full = [runner.classify(t, 0.0)["label_id"] for t in texts]
    assert certificate["empirical_risk"] == pytest.approx(np.mean(np.not_equal(early, full)), abs=1e-5)
    # The labelled rows also say what quantization cost the final prediction.
    labels = read_file(get_task("sst2"), rows).labels
    assert certificate["final_accuracy"] == pytest.approx(np.mean(np.equal(full, labels)), abs=1e-5)
    assert certificate["float_model_final_accuracy"] == record["final_accuracy"]
    # A bundle that lost more than the bound is named in the log (the bound set 1 point under this one's loss).
    from msbert_tf.export import bundle

    monkeypatch.setattr(bundle, "ACCURACY_WARNING", certificate["float_model_final_accuracy"]
                        - certificate["final_accuracy"] - 0.01)
    export_run(copy, str(tmp_path / "warned"), formats=("tflite",), quantize=("dynamic",))
    assert "points less accurate than the float model's" in caplog.text
    # Another threshold than the run's is the caller's: nothing is redone.
    other = export_run(copy, str(tmp_path / "other"), formats=("tflite",), quantize=("dynamic",),
                       rule=ExitRule("entropy", 0.3))[0]
    assert "certificate" not in json.load(open(os.path.join(other, MANIFEST)))
    # Rows that are gone (a calibration file since moved): the float model's threshold stays, said in the log.
    moved = dict(record, rows=str(tmp_path / "moved.tsv"))
    copy.run.save_threshold(moved)
    gone = export_run(copy, str(tmp_path / "gone"), formats=("tflite",), quantize=("dynamic",))[0]
    manifest = json.load(open(os.path.join(gone, MANIFEST)))
    assert "certificate" not in manifest and manifest["exit_rule"]["threshold"] == record["threshold"]
