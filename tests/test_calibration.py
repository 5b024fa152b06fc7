"""Certified exit thresholds: the guarantee on synthetic exits with a known
risk curve, the order of the tests, the degenerate cases and bad input."""

import json
import os

import numpy as np
import pytest

from msbert_tf.errors import UserInputError
from msbert_tf.inference import risk_control
from msbert_tf.inference.calibration import calibrate, candidates, oracle_exit_layers, summary
from msbert_tf.inference.early_exit import simulate
from msbert_tf.inference.uncertainty import entropy

MAX_RISK, CONFIDENCE = 0.05, 0.9
SPEC = {"num_layers": 2, "hidden": 8, "intermediate": 16, "head": "mlp", "head_dim": 4,
        "num_labels": 2, "head_depth": 1, "head_num_heads": 2}


def _exits(n, rng):
    """Two layers: the full model always says class 0; exit 1 is sure to a
    degree u ~ U(0, 1) (entropy rises with u) and says class 1 with
    probability 0.2 u, so the disagreement risk at speed s is known."""
    u = rng.uniform(0.02, 0.98, n)
    p = 0.5 + 0.5 * (1 - u)  # the exit's top probability: 1 at u=0, 0.5 at u=1
    wrong = rng.uniform(size=n) < 0.2 * u
    top, other = np.where(wrong, 1, 0), np.where(wrong, 0, 1)
    probs = np.zeros((n, 2, 2))
    probs[np.arange(n), 0, top] = p
    probs[np.arange(n), 0, other] = 1 - p
    probs[:, 1, 0] = 1.0
    return probs


def _true_risk(speed):
    """P(exit 1 taken and wrong): u below the entropy level of `speed`."""
    grid = np.linspace(0.02, 0.98, 200_001)
    p = 0.5 + 0.5 * (1 - grid)
    exits = entropy(np.stack([p, 1 - p], axis=-1)) <= speed
    return float(np.mean(exits * 0.2 * grid))


def test_violations_stay_under_one_minus_confidence():
    rng = np.random.default_rng(0)
    draws, chosen = 200, []
    for _ in range(draws):
        probs = _exits(400, rng)
        record = calibrate(probs, np.full(400, 8), SPEC, max_risk=MAX_RISK, confidence=CONFIDENCE)
        chosen.append(record["threshold"])
    risks = np.array([_true_risk(s) for s in set(chosen)])
    true = dict(zip(set(chosen), risks))
    violations = np.mean([true[s] > MAX_RISK for s in chosen])
    # 1 - confidence, plus three binomial standard deviations of slack.
    assert violations <= 0.1 + 3 * np.sqrt(0.1 * 0.9 / draws), violations
    # And not by certifying nothing: the thresholds chosen are near the edge.
    assert np.mean([true[s] for s in chosen]) > 0.6 * MAX_RISK


def test_the_dev_style_pick_would_violate_far_more_often():
    """The uncertified pick (largest speed with empirical risk <= max_risk)
    on the same draws: what the certified procedure is protecting against."""
    rng = np.random.default_rng(1)
    speeds = np.array([r.threshold for r in candidates("entropy", 2)])
    violations = 0
    for _ in range(100):
        probs = _exits(400, rng)
        risks = [np.mean(simulate(probs, r).labels != 0) for r in candidates("entropy", 2)]
        pick = speeds[np.flatnonzero(np.array(risks) <= MAX_RISK).max()]
        violations += _true_risk(pick) > MAX_RISK
    assert violations / 100 > 0.3


def test_the_first_failure_stops_the_sequence():
    n = 1000
    losses = np.zeros((4, n), bool)
    losses[1, :100] = True  # 10%: fails
    # Candidates 2 and 3 would pass, but come after a failure.
    result = risk_control.fixed_sequence(losses, MAX_RISK, CONFIDENCE)
    assert result.chosen == 0 and len(result.p_values) == 2
    assert result.p_values[0] <= 0.1 < result.p_values[1]


def test_nothing_certified_runs_the_full_model():
    probs = _exits(300, np.random.default_rng(2))
    # Every exit, even at speed 0, disagrees: make exit 1 always sure and wrong.
    probs[:, 0] = [0.0, 1.0]
    record = calibrate(probs, np.full(300, 8), SPEC, max_risk=MAX_RISK, confidence=CONFIDENCE)
    assert record["certified"] is False and record["threshold"] == 0.0
    assert record["candidates_tested"] == 1


def test_too_few_rows_are_refused_with_the_minimum():
    needed = risk_control.min_calibration_rows(0.01, 0.9)
    assert needed == 230  # 0.99^230 < 0.1 < 0.99^229
    with pytest.raises(risk_control.TooFewRows, match="needs at least 230 rows"):
        risk_control.fixed_sequence(np.zeros((3, 229), bool), 0.01, 0.9)
    assert risk_control.fixed_sequence(np.zeros((3, 230), bool), 0.01, 0.9).chosen == 2


@pytest.mark.parametrize("max_risk, confidence", [(0.0, 0.9), (1.0, 0.9), (0.01, 1.0), (0.01, -0.1), (0.01, "0.9")])
def test_levels_outside_zero_one_are_refused(max_risk, confidence):
    with pytest.raises(UserInputError, match="strictly between 0 and 1"):
        calibrate(_exits(300, np.random.default_rng(3)), np.full(300, 8), SPEC,
                  max_risk=max_risk, confidence=confidence)


def test_accuracy_drop_needs_labels():
    with pytest.raises(UserInputError, match="needs labelled rows"):
        calibrate(_exits(300, np.random.default_rng(4)), np.full(300, 8), SPEC, risk="accuracy_drop")


def test_accuracy_drop_counts_only_rows_the_full_model_gets_right():
    probs = _exits(2000, np.random.default_rng(5))
    labels = np.zeros(2000, int)
    labels[:1000] = 1  # the full model (always 0) is wrong on these: they cannot count
    drop = calibrate(probs, np.full(2000, 8), SPEC, risk="accuracy_drop", labels=labels,
                     max_risk=MAX_RISK, confidence=CONFIDENCE)
    disagree = calibrate(probs, np.full(2000, 8), SPEC, max_risk=MAX_RISK, confidence=CONFIDENCE)
    assert drop["threshold"] > disagree["threshold"]


def test_oracle_exits_at_the_first_agreeing_exit():
    probs = np.array([[[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
                      [[0.1, 0.9], [0.4, 0.6], [0.6, 0.4]]])
    assert oracle_exit_layers(probs).tolist() == [2, 3]


def test_cli_calibrates_and_predict_uses_it(tiny_run, tmp_path):
    """On a tiny trained run: the CLI writes exit_threshold.json and predict's
    default rule is that threshold; bad files are one-line errors."""
    from msbert_tf import MSBert
    from msbert_tf.inference.predict import default_rule

    rows = tmp_path / "rows.txt"
    rows.write_text("".join(f"film number {i} is {'good' if i % 2 else 'dull'}\n" for i in range(300)))
    model = MSBert.load(tiny_run)
    record = model.calibrate(data_file=str(rows), max_risk=0.05)
    on_disk = json.loads(open(f"{tiny_run}/exit_threshold.json").read())
    assert on_disk == record and record["calibration_rows"] == 300 and record["rows"] == str(rows)
    assert default_rule(MSBert.load(tiny_run)._trained).threshold == record["threshold"]
    # A run of an earlier version named the threshold `speed`: read the same.
    older = {("speed" if k == "threshold" else k): v for k, v in record.items()}
    open(f"{tiny_run}/exit_threshold.json", "w").write(json.dumps(older))
    assert default_rule(MSBert.load(tiny_run)._trained).threshold == record["threshold"]
    with pytest.raises(UserInputError, match="needs labelled rows"):
        model.calibrate(data_file=str(rows), risk="accuracy_drop")
    # The task's own layout without its label column: label-free rows, the same answer.
    tsv = tmp_path / "rows.tsv"
    tsv.write_text("sentence\n" + rows.read_text())
    assert model.calibrate(data_file=str(tsv), max_risk=0.05)["threshold"] == record["threshold"]
    with pytest.raises(UserInputError, match="needs labelled rows"):
        model.calibrate(data_file=str(tsv), risk="accuracy_drop")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserInputError, match="has no rows to calibrate on"):
        model.calibrate(data_file=str(empty))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.conftest import fit_tiny_run

    out, model = fit_tiny_run(tmp_path_factory, max_calibration_examples=240)
    # fit() ended by calibrating on the 240 rows it held out.
    assert model.calibration["calibration_rows"] == 240
    assert model.calibration["rows"] == "the training rows held out of this run"
    return out


def test_learned_rule_is_fitted_calibrated_and_predicted_with(tiny_run):
    """`--uncertainty=learned` fits the rule on training rows (not the held-out
    ones), certifies it, and predict then decides by it like the simulator."""
    from msbert_tf import MSBert
    from msbert_tf.inference.predict import default_rule

    model = MSBert.load(tiny_run)
    record = model.calibrate(uncertainty="learned")
    exit_model = json.loads(open(f"{tiny_run}/exit_model.json").read())
    # 2 layers: one exit decides, fitted against each final (the last exit, the mean of both).
    assert exit_model["rows"] == 96 and sorted(exit_model["weights_by_final_exits"]) == ["1", "2"]
    assert all(len(w) == 1 for w in exit_model["weights_by_final_exits"].values())
    assert record["uncertainty"] == "learned" and record["calibration_rows"] == 240
    rule = default_rule(MSBert.load(tiny_run)._trained)
    assert rule.kind == "learned" and rule.threshold == record["threshold"]
    assert rule.final_exits == record["final_exits"]
    assert rule.weights == tuple(tuple(row) for row in exit_model["weights_by_final_exits"][str(rule.final_exits)])


def test_dev_as_calibration_source_holds_nothing_out(tiny_run):
    from msbert_tf import MSBert
    from msbert_tf.data import readers
    from msbert_tf.data.tasks import get_task
    from msbert_tf.inference.calibration import calibration_rows

    trained = MSBert.load(tiny_run)._trained
    trained.config.data.calibration_source = "dev"
    examples, labelled, where = calibration_rows(trained)
    assert (len(examples), labelled, where) == (872, True, "the sst2 dev set")
    rows, held = readers.training_rows(get_task("sst2"), trained.config.data, seed=42)
    assert held is None and len(rows) == 96


def test_evaluate_sweeps_the_learned_rule(tiny_run, tmp_path):
    import subprocess
    import sys

    from msbert_tf import MSBert
    from tests.conftest import GLUE_DIR

    MSBert.load(tiny_run).calibrate(uncertainty="learned")
    done = subprocess.run(
        [sys.executable, "-m", "msbert_tf.evaluate", f"--run_dir={tiny_run}", f"--data_file={GLUE_DIR}/SST-2/dev.tsv",
         "--max_examples=32", "--uncertainty=learned", "--thresholds=0,0.5,1", "--timing_examples=0",
         f"--output={tmp_path}/eval.json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sweep = json.loads((tmp_path / "eval.json").read_text())["sweep"]
    assert [p["uncertainty"] for p in sweep] == ["learned"] * 3
    assert sweep[0]["mean_exit_layer"] == 2 and sweep[-1]["mean_exit_layer"] == 1


def test_training_ends_by_certifying_the_rule_its_config_names(tiny_run):
    """`uncertainty` in the config (the SST-2 preset's: learned) is the rule
    training's last step fits and certifies; evaluate then sweeps it."""
    from msbert_tf import MSBert
    from msbert_tf.inference.calibration import calibrate_after_training
    from msbert_tf.inference.evaluation import LEARNED_THRESHOLDS, evaluate_file
    from tests.conftest import GLUE_DIR

    trained = MSBert.load(tiny_run)._trained
    if os.path.exists(trained.run.exit_model):  # fitted by an earlier test: this one must fit it
        os.remove(trained.run.exit_model)
    trained.config.uncertainty = "learned"
    record = calibrate_after_training(trained)
    assert record["uncertainty"] == "learned" and record["calibration_rows"] == 240
    assert os.path.exists(trained.run.exit_model)
    assert json.loads(open(f"{tiny_run}/exit_threshold.json").read()) == record
    sweep = evaluate_file(trained, f"{GLUE_DIR}/SST-2/dev.tsv", thresholds=[0, 1], max_examples=16,
                          timing_examples=0)["sweep"]
    assert [p["uncertainty"] for p in sweep] == ["learned", "learned"]
    # Without thresholds the sweep reads the learned rule's own scale, near 0, not entropy's 0.1 grid.
    default = evaluate_file(trained, f"{GLUE_DIR}/SST-2/dev.tsv", max_examples=16, timing_examples=0)["sweep"]
    assert [p["threshold"] for p in default] == list(LEARNED_THRESHOLDS)
    assert sum(0 < p["threshold"] < 0.1 for p in default) == 8
    trained.config.uncertainty = None
    assert calibrate_after_training(trained)["uncertainty"] == "entropy"


def test_the_final_exits_a_config_names_are_all_the_certificate_tries(tiny_run):
    """One final named in advance (the SST-2 preset's) is certified at the
    asked confidence; several share it (Bonferroni) and the fastest is kept."""
    from msbert_tf import MSBert
    from msbert_tf.inference.calibration import calibrate_after_training

    model = MSBert.load(tiny_run)
    config = model._trained.config
    assert config.final_exits == (1, 2, 3, 4)  # 2 layers: 1 and 2 are tried
    # 240 rows pay for two finals at 5%, not at training's 1%.
    several = model.calibrate(max_risk=0.05)
    assert set(several["final_exits_tried"]) == {"1", "2"} and several["family_confidence"] == 0.95
    config.final_exits = (2,)
    alone = calibrate_after_training(model._trained)
    assert alone["final_exits"] == 2 and "final_exits_tried" not in alone
    assert alone["family_confidence"] == alone["confidence"] == 0.9 and alone["calibration_rows"] == 240
    assert json.loads(open(f"{tiny_run}/exit_threshold.json").read())["final_exits"] == 2
    # An explicit choice still overrides the config's.
    assert model.calibrate(max_risk=0.05, final_exits=[1])["final_exits"] == 1
    config.final_exits = (1, 2, 3, 4)
    model.calibrate()


def _three_exits(n=1000):
    """Exits 1 and 2 sure of class 0; the last says class 1 on 30% of rows,
    where the mean of the last two still says class 0."""
    probs = np.zeros((n, 3, 2))
    probs[:, 0] = [0.99, 0.01]
    probs[:, 1] = [0.9, 0.1]
    probs[:, 2] = [0.8, 0.2]
    probs[: int(0.3 * n), 2] = [0.4, 0.6]
    return probs


def test_the_fastest_final_prediction_is_chosen_at_a_bonferroni_level():
    spec = dict(SPEC, num_layers=3)
    probs = _three_exits()
    alone = calibrate(probs, np.full(1000, 8), spec, max_risk=MAX_RISK, confidence=CONFIDENCE)
    both = calibrate(probs, np.full(1000, 8), spec, max_risk=MAX_RISK, confidence=CONFIDENCE, final_exits=(1, 2))
    # Against the last exit alone every early exit disagrees on 30% of rows.
    assert alone["final_exits"] == 1 and alone["flops_speedup"] < 1.01
    assert both["final_exits"] == 2 and both["exits_before_last"] == 1.0 and both["confidence"] == CONFIDENCE
    assert set(both["final_exits_tried"]) == {"1", "2"}
    # Each final's family is tested at 1 - 0.1 / 2: its bound is the stricter one's.
    strict = risk_control.upper_bound(0, 1000, 1 - (1 - CONFIDENCE) / 2)
    assert both["risk_upper_bound"] == round(strict, 5) > round(risk_control.upper_bound(0, 1000, CONFIDENCE), 5)


def test_a_final_prediction_less_accurate_on_labelled_rows_is_not_chosen():
    spec = dict(SPEC, num_layers=3)
    probs = _three_exits()
    labels = probs[:, 2].argmax(axis=-1)  # the last exit alone is always right
    record = calibrate(probs, np.full(1000, 8), spec, max_risk=MAX_RISK, confidence=CONFIDENCE,
                       labels=labels, final_exits=(1, 2))
    assert record["final_exits"] == 1
    assert record["final_exits_tried"]["2"]["final_accuracy"] == 0.7 < record["final_accuracy"] == 1.0
    # Named alone, the final is kept, and the record and its words say what it costs against the last exit.
    named = calibrate(probs, np.full(1000, 8), spec, max_risk=MAX_RISK, confidence=CONFIDENCE,
                      labels=labels, final_exits=(2,))
    assert named["final_exits"] == 2 and (named["final_accuracy"], named["last_exit_accuracy"]) == (0.7, 1.0)
    assert "(70.0% accurate on these rows, the last exit alone 100.0%)" in summary(named)


def test_rows_too_few_for_the_stricter_level_try_the_last_exit_alone():
    spec = dict(SPEC, num_layers=3)
    probs = _three_exits(250)  # 230 certify at 90%, 299 would be needed at 95%
    record = calibrate(probs, np.full(250, 8), spec, max_risk=0.01, confidence=0.9, final_exits=(1, 2))
    assert record["final_exits"] == 1 and "final_exits_tried" not in record
    assert record["family_confidence"] == 0.9


def test_an_exit_model_of_an_earlier_version_reads_as_fitted_against_the_last_exit(tmp_path):
    from msbert_tf.run_dir import RunDir

    run = RunDir(str(tmp_path))
    (tmp_path / "exit_model.json").write_text(json.dumps({"features": [], "weights": [[1.0, 2.0]], "rows": 3}))
    assert run.load_exit_model()["weights_by_final_exits"] == {"1": [[1.0, 2.0]]}


def test_calibrate_refuses_no_final_and_a_bare_weights_tuple():
    with pytest.raises(UserInputError, match="final_exits is empty"):
        calibrate(_three_exits(), np.full(1000, 8), dict(SPEC, num_layers=3), final_exits=())
    with pytest.raises(TypeError, match="per final"):
        calibrate(_three_exits(), np.full(1000, 8), dict(SPEC, num_layers=3), uncertainty="learned",
                  weights=((0.0,) * 8,) * 2)


def test_the_final_exits_flag_takes_whole_numbers():
    # Not through msbert_tf.calibrate: importing a CLI module defines its flags in this process.
    from msbert_tf.inference.risk_control import parse_final_exits

    assert parse_final_exits(["1", "4"]) == (1, 4)
    with pytest.raises(UserInputError, match="--final_exits takes whole numbers"):
        parse_final_exits(["1", "last"])
    with pytest.raises(UserInputError, match="--final_exits is empty"):
        parse_final_exits([])
