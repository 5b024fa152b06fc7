"""STS-B, the regression task: reader, metrics, losses, the patience rule
with a tolerance, and a tiny end-to-end run."""

import numpy as np
import pytest

from msbert_tf.config import DistillConfig
from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError
from msbert_tf.inference.early_exit import EarlyExitPredictor, simulate
from msbert_tf.inference.metrics import score
from msbert_tf.inference.uncertainty import ExitRule
from msbert_tf.losses.distill import DistillationLoss
from tests.conftest import tiny_config


def test_stsb_files_give_real_valued_pairs(glue_dir):
    task = tasks.get_task("stsb")
    train = readers.read_split(task, "train", glue_dir)
    dev = readers.read_split(task, "dev", glue_dir)
    assert (len(train), len(dev)) == (5749, 1500)
    assert train.labels.dtype == np.float32 and 0.0 <= train.labels.min() < train.labels.max() <= 5.0
    assert (train.text_a[0], train.text_b[0], float(train.labels[0])) == (
        "A plane is taking off.", "An air plane is taking off.", 5.0)
    assert task.num_labels == 1


def test_a_score_that_is_not_a_number_names_its_line(tmp_path):
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "train.tsv").write_text(
        "sentence1\tsentence2\tscore\na\tb\t3.5\nc\td\thigh\n")
    with pytest.raises(UserInputError, match=r"line 3: score 'high' is not a number"):
        readers.read_split(tasks.get_task("stsb"), "train", str(tmp_path))


def test_correlations_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 200).astype(float)  # ties, as in STS-B's scores
    predictions = labels + rng.normal(0, 1.5, 200)
    assert score("pearson", labels, predictions) == round(100 * stats.pearsonr(labels, predictions)[0], 2)
    assert score("spearman", labels, predictions) == round(100 * stats.spearmanr(labels, predictions)[0], 2)
    assert score("pearson", labels, np.ones(200)) == 0.0


def _outputs(students, teachers):
    s, t = np.asarray(students, "float32")[..., None], np.asarray(teachers, "float32")[..., None]
    return {
        "student_logits": s, "student_z": np.zeros(s.shape[:2] + (8,), "float32"),
        "teacher_logits": t, "teacher_cls": np.zeros(t.shape[:2] + (16,), "float32"),
    }


@pytest.mark.parametrize("loss", ["ce", "kl", "emd"])
def test_regression_losses_by_hand(loss):
    students = [[1.0, 2.0], [3.0, 2.0]]  # 2 heads x 2 examples
    teachers = [[1.0, 2.0], [2.0, 2.0], [3.0, 4.0]]  # 3 layers, the last is C_T
    gold = np.array([3.0, 3.0], "float32")
    parts = DistillationLoss(DistillConfig(loss=loss), 3, 16, head_dim=8, regression=True)(
        _outputs(students, teachers), gold)
    if loss == "ce":  # each head's mean squared error to the gold score, summed
        assert float(parts["loss"]) == pytest.approx((4 + 1) / 2 + (0 + 1) / 2)
        return
    to_teacher = (4 + 4) / 2 + (0 + 4) / 2
    assert float(parts["kl"]) == pytest.approx(to_teacher)
    if loss == "emd":
        # Cost of moving head i to layer j: the mean squared difference; the
        # plan moves 1/2 of mass per head onto 1/3 per layer, never negative.
        assert 0.0 < float(parts["emd"]) <= 6.5
        assert float(parts["loss"]) == pytest.approx(to_teacher + float(parts["emd"]), rel=1e-5)
    equal = DistillationLoss(DistillConfig(loss=loss), 3, 16, head_dim=8, regression=True)(
        _outputs([[3.0, 4.0], [3.0, 4.0]], teachers), gold)
    assert float(equal["kl"]) == 0.0


def test_regression_exits_by_patience_within_a_tolerance():
    values = np.array([[[1.0], [1.05], [1.1], [3.0]],   # agrees with exit 1 at exit 2
                       [[1.0], [2.0], [2.05], [3.0]],   # agrees only from exit 3
                       [[1.0], [2.0], [3.0], [4.0]]])   # never: the teacher
    result = simulate(values, ExitRule("patience", patience=1, tolerance=0.1))
    np.testing.assert_array_equal(result.exit_layers, [2, 3, 4])
    np.testing.assert_allclose(result.labels, [1.05, 2.05, 4.0])
    # Tolerance 0 asks for exactly equal values.
    np.testing.assert_array_equal(simulate(values, ExitRule("patience", patience=1)).exit_layers, [4, 4, 4])
    with pytest.raises(UserInputError, match="regression task exits by the patience rule"):
        ExitRule("entropy", threshold=0.5).validate(num_labels=1)
    with pytest.raises(UserInputError, match="tolerance must be"):
        ExitRule("patience", tolerance=-1.0).validate(num_labels=1)


def test_tiny_stsb_run_reports_correlations_and_exits_like_the_simulator(glue_dir, tmp_path):
    from msbert_tf.data import pipeline
    from msbert_tf.inference.evaluation import evaluate, rules_for
    from msbert_tf.training.trainer import train

    config = tiny_config(glue_dir)
    config.data.task, config.jit_compile = "stsb", False
    result = train(config, str(tmp_path / "run"), verbose=0)
    rules = rules_for("patience", num_layers=result.classifier.num_layers, tolerances=(0.05, 0.5))
    report = evaluate(result.classifier, result.dev_split, rules, max_drop=1.0, metrics=result.task.metrics)
    assert report["dev"]["metric"] == "pearson" and set(report["dev"]["all"]) == {"pearson", "spearman"}
    assert {p["tolerance"] for p in report["sweep"]} == {0.05, 0.5}
    assert np.isfinite(result.stages["distill"]["loss_per_part"]).all()
    # The real shrinking path decides like the simulator on values, not classes.
    x, _ = next(iter(pipeline.eval_dataset(result.dev_split, 32)))
    x = {k: v.numpy() for k, v in x.items()}
    values = np.asarray(result.classifier(x))
    for rule in rules:
        expected = simulate(values, rule)
        got = EarlyExitPredictor(result.classifier).predict(x, rule)
        np.testing.assert_array_equal(got.exit_layers, expected.exit_layers)
        np.testing.assert_allclose(got.labels, expected.labels, atol=1e-5)


def test_a_regression_refuses_the_disagreement_penalty_before_training(glue_dir, tmp_path):
    from msbert_tf.training.trainer import train

    config = tiny_config(glue_dir)
    config.data.task, config.distill.disagreement_penalty = "stsb", 1.0
    with pytest.raises(UserInputError, match="disagreement_penalty needs labels.*stsb is a regression"):
        train(config, str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run").exists()  # refused before the run folder was claimed
    with pytest.raises(ValueError, match="regression has none"):
        DistillationLoss(DistillConfig(disagreement_penalty=1.0), num_layers=3, hidden_dim=16, regression=True)


def test_a_regression_refuses_a_classification_rule_before_training(glue_dir, tmp_path):
    from msbert_tf.training.trainer import train

    config = tiny_config(glue_dir)
    config.data.task, config.uncertainty = "stsb", "learned"
    with pytest.raises(UserInputError, match="uncertainty=learned reads class probabilities; stsb is a regression"):
        train(config, str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run").exists()


def test_stsb_from_tfds_reads_float_scores(monkeypatch):
    """TFDS's STS-B label is a float feature without class names."""
    import types

    import tensorflow_datasets as tfds

    records = [{"sentence1": b"A man sings.", "sentence2": b"A man is singing.", "label": np.float32(4.25)}]
    info = types.SimpleNamespace(features={"label": types.SimpleNamespace()})  # no `.names`
    monkeypatch.setattr(tfds, "load", lambda *args, **kwargs: (records, info))
    monkeypatch.setattr(tfds, "as_numpy", lambda dataset: dataset)
    examples = readers.read_tfds(tasks.get_task("stsb"), "train")
    assert (examples.text_b, examples.labels.tolist()) == (["A man is singing."], [4.25])


def test_the_tradeoff_plot_draws_one_line_per_tolerance():
    from msbert_tf.report import tradeoff_lines

    def point(speedup, metric, tolerance):
        return {"flops_speedup": speedup, "metric": metric, "tolerance": tolerance}

    regression = [point(2.0, 80.0, 0.2), point(1.5, 85.0, 0.1), point(3.0, 70.0, 0.2), point(1.2, 88.0, 0.1)]
    classification = [point(2.0, 90.0, None), point(1.0, 91.0, None)]
    lines = tradeoff_lines({"ms-bert": regression, "kl": classification})
    assert lines == {
        "ms-bert, tolerance 0.1": ([1.2, 1.5], [88.0, 85.0]),
        "ms-bert, tolerance 0.2": ([2.0, 3.0], [80.0, 70.0]),
        "kl": ([1.0, 2.0], [91.0, 90.0]),
    }


def test_the_chosen_point_is_named_once_with_its_knobs():
    from msbert_tf.report import _chosen

    patience = {"uncertainty": "patience", "patience": 1, "tolerance": 0.5}
    topk = {"uncertainty": "topk", "top_k": 2, "threshold": 0.3}
    entropy = {"uncertainty": "entropy", "threshold": 0.5}
    assert [_chosen(p) for p in (patience, topk, entropy)] == [
        "patience 1, tolerance 0.5", "topk (K=2) threshold 0.3", "entropy threshold 0.5",
    ]
