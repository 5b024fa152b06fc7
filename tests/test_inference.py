import math

import numpy as np
import pytest

from msbert_tf.config import ModelConfig
from msbert_tf.errors import UserInputError
from msbert_tf.inference import flops
from msbert_tf.inference.early_exit import EarlyExitPredictor, simulate
from msbert_tf.inference.uncertainty import ExitRule, entropy, top_k_entropy
from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier


def test_entropy_by_hand():
    p = np.array([0.5, 0.25, 0.25])
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)) / math.log(3)
    assert entropy(p) == pytest.approx(expected)
    assert entropy(np.array([1.0, 0.0])) == pytest.approx(0.0)
    assert entropy(np.array([0.5, 0.5])) == pytest.approx(1.0)


def test_top_k_with_k_equal_n_is_entropy():
    p = np.random.default_rng(0).dirichlet(np.ones(6), size=10)
    np.testing.assert_allclose(top_k_entropy(p, 6), entropy(p))


def test_top_k_ignores_the_long_tail():
    # 50 classes: one clear winner, a runner-up, and a flat tail.
    p = np.full(50, 0.3 / 48)
    p[0], p[1] = 0.6, 0.1
    q = np.array([0.6, 0.1]) / 0.7
    by_hand = -(q * np.log(q)).sum() / math.log(2)
    assert top_k_entropy(p, 2) == pytest.approx(by_hand)
    # Plain entropy is inflated by the tail: the same example looks less sure.
    assert entropy(p) > 0.4 > top_k_entropy(p, 2) - 0.2


def test_graph_uncertainty_equals_numpy_and_a_uniform_row_is_exactly_1():
    from msbert_tf.inference.entropy import graph_uncertainty as uncertainty

    probs = np.random.default_rng(0).dirichlet(np.full(6, 0.3), size=200).astype(np.float32)
    uniform = np.full((1, 6), 1 / 6, np.float32)
    for kind, k, numpy_version in (("entropy", 6, entropy), ("topk", 3, lambda p: top_k_entropy(p, 3))):
        np.testing.assert_allclose(uncertainty(probs, kind, k).numpy(), numpy_version(probs), rtol=0, atol=1e-12)
        # Speed 1 must exit a uniform row on both paths: rounding can't push it past 1.
        assert uncertainty(uniform, kind, k).numpy()[0] <= 1.0 and numpy_version(uniform)[0] <= 1.0


@pytest.mark.parametrize(
    "rule, message",
    [
        (ExitRule("entropy", threshold=1.5), r"in \[0, 1\]"),
        (ExitRule("entropy", threshold=-0.1), r"in \[0, 1\]"),
        (ExitRule("topk", threshold=0.2, top_k=1), "top_k must be between 2"),
        (ExitRule("topk", threshold=0.2, top_k=7), "top_k must be between 2"),
        (ExitRule("margin"), "not one of"),
        (ExitRule("patience", patience=0), "at least 1"),
        (ExitRule("entropy", final_exits=0), "final_exits must be a whole number"),
        (ExitRule("entropy", final_exits=1.5), "final_exits must be a whole number"),
    ],
)
def test_bad_rules_are_rejected(rule, message):
    with pytest.raises(UserInputError, match=message):
        rule.validate(num_labels=6)


def test_simulator_by_hand():
    probs = np.array(
        [
            [[0.95, 0.05], [0.9, 0.1], [0.2, 0.8]],  # sure at exit 1
            [[0.6, 0.4], [0.99, 0.01], [0.2, 0.8]],  # sure at exit 2
            [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8]],  # never: the teacher
        ]
    )
    out = simulate(probs, ExitRule("entropy", threshold=0.3))
    assert out.exit_layers.tolist() == [1, 2, 3]
    assert out.labels.tolist() == [0, 0, 1]
    assert simulate(probs, ExitRule("entropy", threshold=0.0)).exit_layers.tolist() == [3, 3, 3]
    assert simulate(probs, ExitRule("entropy", threshold=1.0)).exit_layers.tolist() == [1, 1, 1]
    assert simulate(probs, ExitRule("patience", patience=1)).exit_layers.tolist() == [2, 2, 3]
    # The final prediction as the mean of the last two exits: the third row
    # now ends on [0.3, 0.7]; rows that left early keep their own exit's.
    final = simulate(probs, ExitRule("entropy", threshold=0.3, final_exits=2))
    np.testing.assert_allclose(final.probs, [[0.95, 0.05], [0.99, 0.01], [0.3, 0.7]])
    with pytest.raises(UserInputError, match="more exits than the model has"):
        simulate(probs, ExitRule("entropy", final_exits=4))


@pytest.fixture(scope="module")
def tiny_classifier():
    import keras

    keras.utils.set_random_seed(1)
    from msbert_tf.config import RandomBackboneConfig

    config = ModelConfig(backbone="random", random_backbone=RandomBackboneConfig(num_layers=4))
    backbone, preprocessor = load_backbone(config, max_seq_length=24)
    # Mean pooling: the teacher exit then reads every row the early-exit
    # path trims, so a wrong mask after trimming shows (other tests use [CLS]).
    classifier = MSBertClassifier(
        backbone, num_labels=3, head="attention", head_dim=8, teacher_pooling="mean"
    )
    classifier.build()
    # Larger head weights spread the random heads' confidences over [0, 1].
    for head in classifier.exit_heads:
        head.logits_dense.kernel.assign(head.logits_dense.kernel * 8)
    return classifier, preprocessor


@pytest.mark.parametrize(
    "rule",
    # Speeds in (0, 1) are read as quantiles of the observed uncertainties
    # below, so that every case mixes early and late exits.
    [ExitRule("entropy", s) for s in (0.0, 0.2, 0.5, 0.8, 1.0)]
    + [ExitRule("topk", 0.5, top_k=2), ExitRule("patience", patience=1), ExitRule("patience", patience=2)]
    # The learned rule with arbitrary coefficients (3 exits x 7 features + bias).
    + [ExitRule("learned", s, weights=tuple(map(tuple, np.random.default_rng(2).normal(size=(3, 8)).tolist())))
       for s in (0.3, 0.7)]
    # The final prediction as a mean of the last exits, carried by the rows that stay.
    + [ExitRule("entropy", 0.15, final_exits=3), ExitRule("entropy", 0.0, final_exits=4),
       ExitRule("patience", patience=2, final_exits=2)],
)
def test_real_path_agrees_with_simulator(tiny_classifier, rule):
    import dataclasses

    classifier, preprocessor = tiny_classifier
    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "dull", "great", "the", "a", "long", "fun"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 18))) for _ in range(40)]
    inputs = {k: np.asarray(v).astype("int32") for k, v in preprocessor(texts).items()}
    all_probs = np.asarray(__import__("keras").ops.softmax(classifier(inputs), axis=-1))
    if rule.kind != "patience" and 0 < rule.threshold < 1:
        observed = rule.uncertainty(all_probs[:, :-1]).ravel()
        rule = dataclasses.replace(rule, threshold=float(np.quantile(observed, rule.threshold)))
    expected = simulate(all_probs, rule)
    got = EarlyExitPredictor(classifier).predict(inputs, rule)
    np.testing.assert_array_equal(got.exit_layers, expected.exit_layers)
    np.testing.assert_array_equal(got.labels, expected.labels)
    np.testing.assert_allclose(got.probs, expected.probs, atol=1e-5)
    if rule.kind in ("entropy", "learned") and 0 < rule.threshold < 1:
        assert len(set(got.exit_layers.tolist())) > 1  # the test really mixes exits
    if rule.final_exits > 1 and rule.threshold > 0:
        # Rows leave while others go on summing the last exits: the sum must follow the rows that stay.
        layers = set(got.exit_layers.tolist())
        assert 4 in layers and layers & {2, 3}, layers


def test_flops_by_hand():
    spec = {"num_layers": 2, "hidden": 4, "intermediate": 8, "head": "mlp", "head_dim": 2, "head_depth": 1, "num_labels": 3,
            "head_num_heads": 2}
    T = 5
    layer = 4 * 2 * T * 4 * 4 + 2 * 2 * T * T * 4 + 2 * 2 * T * 4 * 8  # 640 + 400 + 640
    assert flops.layer_flops(T, 4, 8) == layer == 1680
    head = 2 * 4 * 2 + 2 * 2 * 3  # 28
    teacher = 2 * 4 * 4 + 2 * 4 * 3  # 56
    assert flops.path_flops(1, T, spec) == layer + head
    assert flops.path_flops(2, T, spec) == 2 * layer + head + teacher
    assert flops.teacher_flops(T, spec) == 2 * layer + teacher


def test_deeper_head_flops_by_hand():
    T, hidden, d, labels = 5, 4, 2, 3
    mlp = {"num_layers": 2, "hidden": hidden, "intermediate": 8, "head": "mlp", "head_dim": d, "head_depth": 1,
           "num_labels": labels, "head_num_heads": 2}
    assert flops.head_flops("mlp", T, hidden, d, labels, depth=3) == 2 * 4 * 2 + 2 * (2 * 2 * 2) + 2 * 2 * 3
    deeper = flops.path_flops(1, T, {**mlp, "head_depth": 2}) - flops.path_flops(1, T, mlp)
    assert deeper == 2 * d * d
    # An attention head's extra block: a transformer layer of width d, feed-forward 4d.
    block = 4 * 2 * T * d * d + 2 * 2 * T * T * d + 2 * 2 * T * d * (4 * d)  # 160 + 200 + 320
    two, three = (flops.head_flops("attention", T, hidden, d, labels, depth=k) for k in (2, 3))
    assert three - two == block == 680
    # Depth 1 reads [CLS] off the hidden states (two attention heads of size 1).
    cls, per_head, dense = 2 * hidden * d, 2 * hidden * d + 4 * T * hidden + 2 * hidden * d, 5 * 2 * d * d
    assert flops.head_flops("attention", T, hidden, d, labels) == cls + 2 * per_head + dense + 2 * d * labels == 292


def profiled_flops(call, length, hidden):
    """TensorFlow's profiler's float operations of `call(x, mask)` on one example of `length` tokens."""
    import tensorflow as tf
    from tensorflow.python.profiler import option_builder

    graph = (
        tf.function(call)
        .get_concrete_function(tf.TensorSpec([1, length, hidden]), tf.TensorSpec([1, length], tf.int32))
        .graph
    )
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def test_attention_head_flops_agree_with_tensorflow_profiler():
    from msbert_tf.models.heads import AttentionExitHead

    hidden, head_dim, length = 384, 128, 25
    head = AttentionExitHead(num_labels=2, hidden_dim=head_dim, num_heads=2)
    head.build((1, length, hidden))
    profiled = profiled_flops(lambda x, m: head(x, m)[1], length, hidden)
    assert profiled == pytest.approx(flops.head_flops("attention", length, hidden, head_dim, 2), rel=0.05)


def test_layer_flops_agree_with_tensorflow_profiler():
    import keras_hub

    hidden, intermediate, length = 384, 1536, 20
    layer = keras_hub.layers.TransformerEncoder(intermediate_dim=intermediate, num_heads=12)
    layer.build((1, length, hidden))
    profiled = profiled_flops(lambda x, m: layer(x, padding_mask=m), length, hidden)
    # The profiler counts biases, softmax and norms but not the attention
    # einsums; ours the reverse. Both are dominated by the same products.
    assert profiled == pytest.approx(flops.layer_flops(length, hidden, intermediate), rel=0.02)


def test_wall_clock_times_both_paths(tiny_classifier):
    from msbert_tf.data import pipeline
    from msbert_tf.data.readers import Examples
    from msbert_tf.inference.sweep import WallClock

    classifier, preprocessor = tiny_classifier
    texts = ["good film", "a long and dull plot", "fun"] * 4
    split = pipeline.encode(Examples(text_a=texts, labels=np.zeros(len(texts), np.int32)), preprocessor)
    clock = WallClock(classifier, split, batch_size=4)
    assert len(clock.batches) == 3 and clock.teacher_seconds > 0
    assert clock.speedup(ExitRule("entropy", 1.0)) > 0


def test_another_rule_than_the_chosen_one_needs_its_own_threshold(tmp_path):
    import json
    from types import SimpleNamespace

    from msbert_tf.errors import UserInputError
    from msbert_tf.inference.predict import default_rule
    from msbert_tf.run_dir import RunDir

    (tmp_path / "exit_threshold.json").write_text(json.dumps({"uncertainty": "patience", "threshold": 0.0, "patience": 2}))
    trained = SimpleNamespace(run=RunDir(str(tmp_path)), classifier=SimpleNamespace(num_labels=2),
                              task=SimpleNamespace(regression=False))
    with pytest.raises(UserInputError, match="with --uncertainty=entropy pass --threshold"):
        default_rule(trained, uncertainty="entropy")
    assert default_rule(trained, threshold=0.4, uncertainty="entropy") == ExitRule("entropy", 0.4, 2, 2)
    assert default_rule(trained).kind == "patience"
    # The patience rule takes its count, and no other rule does.
    assert default_rule(trained, patience=3).patience == 3
    with pytest.raises(UserInputError, match="the entropy rule does not read it: drop --patience"):
        default_rule(trained, threshold=0.4, uncertainty="entropy", patience=3)
    (tmp_path / "exit_threshold.json").write_text(json.dumps({"uncertainty": "entropy", "threshold": 0.5}))
    with pytest.raises(UserInputError, match="with --uncertainty=patience pass --patience as well"):
        default_rule(trained, uncertainty="patience")
    assert default_rule(trained, uncertainty="patience", patience=1).patience == 1
