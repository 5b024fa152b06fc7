import numpy as np
import pytest

from msbert_tf.config import ModelConfig
from msbert_tf.errors import UserInputError
from msbert_tf.models.backbone import load_backbone, uses_exact_gelu
from msbert_tf.models.classifier import MSBertClassifier
from msbert_tf.models.heads import AttentionExitHead, MLPExitHead


@pytest.fixture(scope="module")
def tiny():
    return load_backbone(ModelConfig(backbone="random"), max_seq_length=16)


@pytest.mark.parametrize("head", ["mlp", "attention"])
@pytest.mark.parametrize("depth", [1, 2])
def test_classifier_outputs_every_exit(tiny, head, depth):
    backbone, preprocessor = tiny
    model = MSBertClassifier(backbone, num_labels=3, head=head, head_dim=8, head_depth=depth)
    logits = model(preprocessor(["a good film", "bad"]))
    assert logits.shape == (2, backbone.num_layers, 3)
    assert len(model.exit_heads) == backbone.num_layers - 1


def test_hidden_states_match_the_backbone(tiny):
    backbone, preprocessor = tiny
    model = MSBertClassifier(backbone, num_labels=2, head="mlp", head_dim=8)
    inputs = preprocessor(["a good film", "bad"])
    states = model.hidden_states(inputs)
    np.testing.assert_allclose(states[-1], backbone(inputs)["sequence_output"], atol=1e-6)


@pytest.mark.parametrize("depth", [1, 2])
def test_attention_head_ignores_padding(depth):
    head = AttentionExitHead(num_labels=2, hidden_dim=8, num_heads=2, depth=depth)
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(1, 6, 16)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0, 0]], "int32")
    noisy = hidden.copy()
    noisy[:, 3:] = rng.normal(size=(1, 3, 16))
    np.testing.assert_allclose(head(hidden, mask)[1], head(noisy, mask)[1], atol=1e-6)
    # ...while the unpadded tokens do matter.
    changed = hidden.copy()
    changed[:, 1] += 1.0
    assert not np.allclose(head(hidden, mask)[1], head(changed, mask)[1])


def test_attention_head_reads_cls_as_multi_head_attention_does():
    # Without dropout the training path is keras' MultiHeadAttention over
    # every projected token; inference reads [CLS] off the hidden states.
    head = AttentionExitHead(num_labels=3, hidden_dim=8, num_heads=2, dropout=0.0)
    head.build((3, 6, 16))
    rng = np.random.default_rng(0)
    for weight in head.weights:  # biases too: the key's must cancel, the value's and projection's pass through
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    hidden = rng.normal(size=(3, 6, 16)).astype("float32")
    mask = np.array([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], "int32")
    # A batch of one takes the stage graphs' batched products, any other batch element-wise ones.
    for rows in (slice(0, 3), slice(1, 2)):
        z, logits = head(hidden[rows], mask[rows])
        z_mha, logits_mha = head(hidden[rows], mask[rows], training=True)
        np.testing.assert_allclose(z, z_mha, atol=1e-5)
        np.testing.assert_allclose(logits, logits_mha, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("cls", [MLPExitHead, AttentionExitHead])
def test_heads_round_trip_config(cls):
    head = cls(num_labels=4, hidden_dim=8, depth=3, name="h")
    clone = cls.from_config(head.get_config())
    assert clone.get_config() == head.get_config()


@pytest.mark.parametrize("head, depth", [("attention", 1), ("attention", 2), ("mlp", 2)])
def test_weights_save_and_load(tiny, tmp_path, head, depth):
    backbone, preprocessor = tiny
    inputs = preprocessor(["a good film"])
    model = MSBertClassifier(backbone, num_labels=2, head=head, head_dim=8, head_depth=depth)
    model.build()
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    other_backbone, _ = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    other = MSBertClassifier(other_backbone, num_labels=2, head=head, head_dim=8, head_depth=depth)
    other.build()
    assert not np.allclose(other(inputs), model(inputs))
    other.load_weights(path)
    np.testing.assert_allclose(other(inputs), model(inputs), atol=1e-6)


def test_unknown_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="could not load backbone"):
        load_backbone(ModelConfig(backbone=str(tmp_path / "nowhere")), max_seq_length=16)


def test_sequence_length_above_the_maximum(tiny):
    with pytest.raises(UserInputError, match="above the backbone's maximum"):
        load_backbone(ModelConfig(backbone="random"), max_seq_length=4096)


def test_mean_pooled_teacher_reads_the_unpadded_mean(tiny):
    backbone, _ = tiny
    model = MSBertClassifier(backbone, num_labels=2, head="mlp", head_dim=8, teacher_pooling="mean")
    model.build()
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(1, 5, backbone.hidden_dim)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0]], "int32")
    mean = hidden[:, :3].mean(axis=1)
    expected = model.teacher_dense(backbone.pooled_dense(mean))
    np.testing.assert_allclose(model.teacher_logits(hidden, mask), expected, atol=1e-5)
    noisy = hidden.copy()
    noisy[:, 3:] += 5.0  # padding rows do not count
    np.testing.assert_allclose(model.teacher_logits(noisy, mask), expected, atol=1e-5)
    # keras-hub's preprocessor gives a boolean mask.
    np.testing.assert_allclose(model.teacher_logits(hidden, mask.astype(bool)), expected, atol=1e-5)
    # A batch of one and a larger batch read the mean in different ops (`rows`).
    pair = model.teacher_logits(np.concatenate([hidden, noisy]), np.concatenate([mask, mask]))
    np.testing.assert_allclose(pair, np.concatenate([expected, expected]), atol=1e-5)
    # [CLS] pooling reads row 0 only, so the two differ on the same input.
    cls_model = MSBertClassifier(backbone, num_labels=2, head="mlp", head_dim=8)
    cls_model.build()
    cls_model.teacher_dense.set_weights(model.teacher_dense.get_weights())
    assert not np.allclose(cls_model.teacher_logits(hidden, mask), expected)
    clone = MSBertClassifier.from_config(model.get_config())
    assert clone.teacher_pooling == "mean"


@pytest.mark.parametrize("head", ["mlp", "attention"])
def test_deeper_heads_add_their_layers(head):
    shallow = MLPExitHead if head == "mlp" else AttentionExitHead
    hidden, mask = np.zeros((1, 5, 16), "float32"), np.ones((1, 5), "int32")
    sizes = []
    for depth in (1, 2):
        layer = shallow(num_labels=2, hidden_dim=8, depth=depth)
        layer(hidden, mask)
        sizes.append(sum(int(np.prod(w.shape)) for w in layer.weights))
    # One more dense(8) for mlp; one more transformer block of width 8 for attention.
    block = 4 * (8 * 8 + 8) + 2 * 8 * 32 + 32 + 8 + 2 * 2 * 8
    assert sizes[1] - sizes[0] == (8 * 8 + 8 if head == "mlp" else block)


@pytest.mark.parametrize("gelu", ["exact", "tanh"])
def test_a_saved_classifier_loads_with_its_gelu_and_its_numbers(tmp_path, gelu):
    import keras

    backbone, preprocessor = load_backbone(ModelConfig(backbone="random", gelu=gelu), max_seq_length=16)
    model = MSBertClassifier(backbone, num_labels=3, head="attention", head_dim=8)
    inputs = preprocessor(["a good film", "bad"])
    # Large enough activations that erf and tanh GELU differ visibly.
    for layer in backbone.transformer_layers:
        dense = layer._feedforward_intermediate_dense
        dense.kernel.assign(dense.kernel * 30.0)
    expected = np.asarray(model(inputs))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(inputs)), expected, atol=1e-5)
    assert uses_exact_gelu(loaded.backbone) == (gelu == "exact")
