import numpy as np
import pytest
import tensorflow as tf

from msbert_tf.config import DistillConfig, ModelConfig
from msbert_tf.losses.distill import DistillationLoss
from msbert_tf.models.backbone import load_backbone
from msbert_tf.models.classifier import MSBertClassifier
from msbert_tf.training.stage_models import DistillationModel

NUM_LAYERS, HIDDEN, HEAD_DIM, BATCH, LABELS = 3, 16, 8, 4, 3


def _outputs(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "student_logits": tf.constant(rng.normal(size=(NUM_LAYERS - 1, BATCH, LABELS)), tf.float32),
        "student_z": tf.constant(rng.normal(size=(NUM_LAYERS - 1, BATCH, HEAD_DIM)), tf.float32),
        "teacher_logits": tf.constant(rng.normal(size=(NUM_LAYERS, BATCH, LABELS)), tf.float32),
        "teacher_cls": tf.constant(rng.normal(size=(NUM_LAYERS, BATCH, HIDDEN)), tf.float32),
    }


def _loss(**overrides):
    return DistillationLoss(DistillConfig(**overrides), NUM_LAYERS, HIDDEN, head_dim=HEAD_DIM)


def _kl(p, q):
    return float(np.sum(p * (np.log(p) - np.log(q))))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kl_is_fastbert_sum_over_heads():
    out = _outputs()
    parts = _loss(loss="kl", temperature=2.0)(out, tf.zeros((BATCH,), tf.int32))
    p_t = _softmax(out["teacher_logits"][-1].numpy() / 2.0)
    p_s = _softmax(out["student_logits"].numpy() / 2.0)
    expected = sum(np.mean([_kl(p_t[b], p_s[i, b]) for b in range(BATCH)]) for i in range(NUM_LAYERS - 1))
    assert float(parts["loss"]) == pytest.approx(expected, rel=1e-5)


def test_ce_uses_gold_labels_only():
    out = _outputs()
    labels = tf.constant([0, 1, 2, 1])
    parts = _loss(loss="ce")(out, labels)
    p_s = _softmax(out["student_logits"].numpy())
    expected = sum(-np.mean(np.log(p_s[i, np.arange(BATCH), labels.numpy()])) for i in range(NUM_LAYERS - 1))
    assert float(parts["loss"]) == pytest.approx(expected, rel=1e-5)
    changed = dict(out, teacher_logits=out["teacher_logits"] * 5)
    assert float(_loss(loss="ce")(changed, labels)["loss"]) == float(parts["loss"])


@pytest.mark.parametrize("cost", ["logits", "hidden", "both"])
@pytest.mark.parametrize("solver", ["sinkhorn", "exact"])
def test_emd_adds_a_transport_term(cost, solver):
    out = _outputs()
    loss = _loss(loss="emd", emd_cost=cost, emd_solver=solver, alpha=0.0, beta=1.0)
    parts = loss(out, tf.zeros((BATCH,), tf.int32))
    assert float(parts["emd"]) > 0 and float(parts["loss"]) == pytest.approx(float(parts["emd"]))


def test_emd_is_zero_when_every_student_matches_every_teacher_layer():
    out = _outputs()
    same = tf.tile(out["teacher_logits"][:1], [NUM_LAYERS, 1, 1])
    out = dict(out, teacher_logits=same, student_logits=same[:-1])
    parts = _loss(loss="emd", emd_cost="logits")(out, tf.zeros((BATCH,), tf.int32))
    assert float(parts["emd"]) == pytest.approx(0.0, abs=1e-6)


def test_learned_layer_weights_move_and_stay_normalised():
    loss = _loss(loss="emd", layer_weights="learned")
    before = loss.teacher_mass.numpy().copy()
    for seed in range(5):
        # Small costs (x0.01) must not collapse the masses onto one pile.
        out = _outputs(seed)
        out = dict(out, student_logits=out["student_logits"] * 0.01, teacher_logits=out["teacher_logits"] * 0.01)
        loss(out, tf.zeros((BATCH,), tf.int32), training=True)
        assert loss.teacher_mass.numpy().min() > 0.01 and loss.student_mass.numpy().min() > 0.01
    after = loss.teacher_mass.numpy()
    assert not np.allclose(before, after)
    assert after.sum() == pytest.approx(1.0, abs=1e-5)
    assert loss.student_mass.numpy().sum() == pytest.approx(1.0, abs=1e-5)


def test_emd_gradient_reaches_heads_not_backbone():
    backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    classifier = MSBertClassifier(backbone, num_labels=2, head="attention", head_dim=HEAD_DIM)
    classifier.build()
    loss = DistillationLoss(
        DistillConfig(loss="emd", emd_cost="both"), classifier.num_layers, 16, head_dim=HEAD_DIM
    )
    model = DistillationModel(classifier, loss)
    inputs = preprocessor(["a fine film", "dull and long"])
    with tf.GradientTape() as tape:
        parts = loss(model(inputs, training=True), tf.constant([1, 0]), training=True)
    watched = backbone.trainable_weights + classifier.teacher_dense.trainable_weights
    assert not watched  # frozen: not even offered to the optimizer
    heads = [w for h in classifier.exit_heads for w in h.trainable_weights]
    head_grads = tape.gradient(parts["emd"], heads + backbone.weights)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in head_grads[: len(heads)])
    assert all(g is None for g in head_grads[len(heads):])
    trainable = {id(w) for w in model.trainable_weights}
    assert {id(w) for w in heads} <= trainable
    assert not trainable & {id(w) for w in backbone.weights}


@pytest.mark.parametrize("loss", ["emd", "kl"])
def test_the_loss_round_trips_its_config(loss):
    original = _loss(loss=loss, temperature=2.0, emd_cost="both", alpha=0.5)
    clone = DistillationLoss.from_config(original.get_config())
    assert clone.config == original.config and clone.get_config() == original.get_config()
    labels = tf.constant([0, 1, 2, 1])
    expected = float(original(_outputs(), labels)["loss"])
    clone(_outputs(), labels)  # builds the EMD cost's projection, then takes the original's weights
    clone.set_weights(original.get_weights())
    assert float(clone(_outputs(), labels)["loss"]) == pytest.approx(expected, rel=1e-6)
    assert float(_loss(loss=loss, temperature=1.0)(_outputs(), labels)["loss"]) != pytest.approx(
        float(original(_outputs(), labels)["loss"]), rel=1e-6)


@pytest.mark.parametrize("loss", ["emd", "kl", "ce"])
def test_disagreement_penalty_by_hand(loss):
    out, labels = _outputs(), tf.constant([0, 1, 2, 1])
    base = _loss(loss=loss)(out, labels)
    parts = _loss(loss=loss, disagreement_penalty=2.0)(out, labels)
    p_s = _softmax(out["student_logits"].numpy())
    teacher_label = out["teacher_logits"][-1].numpy().argmax(-1)
    uniform = np.full(LABELS, 1 / LABELS)
    expected = sum(
        np.mean([(p_s[i, b].argmax() != teacher_label[b]) * _kl(uniform, p_s[i, b]) for b in range(BATCH)])
        for i in range(NUM_LAYERS - 1)
    )
    assert expected > 0  # the random outputs disagree somewhere, or the test proves nothing
    assert float(parts["penalty"]) == pytest.approx(expected, rel=1e-5)
    assert float(parts["loss"]) == pytest.approx(float(base["loss"]) + 2.0 * expected, rel=1e-5)
    assert "penalty" not in base


def test_disagreement_penalty_flattens_disagreeing_exits_only():
    out = _outputs()
    students = tf.Variable(out["student_logits"])
    with tf.GradientTape() as tape:
        penalty = _loss(loss="kl", disagreement_penalty=1.0)(dict(out, student_logits=students), tf.zeros((BATCH,)))
    grad = tape.gradient(penalty["penalty"], students).numpy()
    p_s = _softmax(out["student_logits"].numpy())
    disagrees = p_s.argmax(-1) != out["teacher_logits"][-1].numpy().argmax(-1)[None]
    assert disagrees.any() and (~disagrees).any()
    np.testing.assert_array_equal(grad[~disagrees], 0.0)
    # A step against the gradient makes each disagreeing exit less sure of its label.
    stepped = _softmax(out["student_logits"].numpy() - 0.5 * grad)
    assert (stepped.max(-1)[disagrees] < p_s.max(-1)[disagrees]).all()


def test_the_stage_model_logs_the_penalty_it_adds():
    backbone, preprocessor = load_backbone(ModelConfig(backbone="random"), max_seq_length=16)
    classifier = MSBertClassifier(backbone, num_labels=2, head="attention", head_dim=HEAD_DIM)
    classifier.build()
    loss = DistillationLoss(DistillConfig(loss="kl", disagreement_penalty=1.0), classifier.num_layers, 16,
                            head_dim=HEAD_DIM)
    model = DistillationModel(classifier, loss)
    inputs = preprocessor(["a fine film", "dull and long", "so so", "a mess"])
    outputs = model(inputs)
    total = model.compute_loss(y=tf.constant([1, 0, 1, 0]), y_pred=outputs)
    parts = loss(outputs, tf.constant([1, 0, 1, 0]))
    assert set(model.part_trackers) == {"kl", "penalty"}
    assert float(model.part_trackers["penalty"].result()) == pytest.approx(float(parts["penalty"]), rel=1e-5)
    assert float(total) == pytest.approx(float(parts["kl"]) + float(parts["penalty"]), rel=1e-5)
