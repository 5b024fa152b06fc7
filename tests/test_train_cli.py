"""The train CLI as a user runs it: real MiniLM weights, a few hundred SST-2 rows."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from msbert_tf.config import RunConfig
from msbert_tf.data import readers, tasks
from msbert_tf.errors import UserInputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(*args):
    return subprocess.run(
        [sys.executable, "-m", "msbert_tf.train", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )


@pytest.mark.slow
def test_cli_trains_minilm_and_reports_every_exit(glue_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        "--config=configs/sst2.json", f"--data_dir={glue_dir}", f"--output_dir={out}",
        "--max_train_examples=480", "--max_eval_examples=200", "--teacher_epochs=2",
        "--distill_epochs=2", "--learning_rate=1e-4", "--nojit_compile",
        "--thresholds=0,0.3,0.6,1", "--timing_examples=0",
        "--calibration_source=held_out", "--max_calibration_examples=600",
    ]
    done = _train(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    # Not a terminal: a line per part, no progress bar's control characters.
    assert not any(c in done.stderr for c in ("\x08", "\r", "\x1b[")), done.stderr[-500:]
    assert "evaluating 200 rows: every exit, 4 exit rule(s)." in done.stderr
    # The preset's rule: fitted on training rows, then certified.
    assert "certifying an exit threshold (learned rule) on 600 rows" in done.stderr
    report = json.loads((out / "report.json").read_text())
    assert [p["uncertainty"] for p in report["sweep"]] == ["learned"] * 4
    assert len(report["dev"]["exits"]) == 6
    assert report["dev"]["teacher"] == report["dev"]["exits"][-1]
    dev = readers.read_split(tasks.get_task("sst2"), "dev", glue_dir).take(200)
    majority = 100 * max(np.mean(dev.labels), 1 - np.mean(dev.labels))
    # 480 rows are enough to beat always-the-majority-label clearly.
    assert report["dev"]["teacher"] > majority + 10, report["dev"]
    for name in ("config.json", "teacher.weights.h5", "model.weights.h5", "report.md"):
        assert (out / name).exists(), name
    assert os.listdir(out / "logs" / "teacher")
    # The sweep: threshold 0 is the teacher, threshold 1 exits everything at layer 1.
    sweep = {p["threshold"]: p for p in report["sweep"]}
    # Threshold 0 is the full model: the final prediction calibration chose (checked against predict below).
    assert sweep[0.0]["mean_exit_layer"] == 6 and sweep[0.0]["metric"] == report["full_model_metric"]
    assert report["final_exits"] == report["calibration"]["final_exits"]
    if report["final_exits"] == 1:
        assert report["full_model_metric"] == report["dev"]["teacher"]
    assert sweep[1.0]["metric"] == report["dev"]["exits"][0] and sweep[1.0]["mean_exit_layer"] == 1
    assert sweep[1.0]["flops_speedup"] > 4
    assert (out / "report_tradeoff.png").stat().st_size > 10_000
    # The dev pick: the fastest point within 0.5 of the full model as it runs.
    allowed = [p for p in report["sweep"] if p["metric"] >= report["full_model_metric"] - 0.5]
    assert report["chosen"]["flops_speedup"] == max(p["flops_speedup"] for p in allowed)
    # The default threshold is certified on the 600 training rows held out,
    # none of which were trained on; predict uses it.
    certified = json.loads((out / "exit_threshold.json").read_text())
    assert certified == report["calibration"]
    assert certified["calibration_rows"] == 600 and certified["certified"] is True
    assert certified["risk_upper_bound"] >= certified["empirical_risk"]
    assert certified["oracle_flops_speedup"] >= certified["flops_speedup"]
    held = json.loads((out / "calibration.json").read_text())["text_a"]
    every = readers.read_split(tasks.get_task("sst2"), "train", glue_dir)
    assert held == readers.hold_out(every, 0.05, 600, seed=42)[1].text_a
    from msbert_tf import MSBert

    model = MSBert.load(str(out))
    dev200 = readers.read_split(tasks.get_task("sst2"), "dev", glue_dir).take(200)
    assert model.predict(dev200.text_a[:20]) == model.predict(dev200.text_a[:20], threshold=certified["threshold"])
    full = [int(p["label"]) for p in model.predict(dev200.text_a, threshold=0.0)]
    assert 100 * np.mean(np.array(full) == dev200.labels) == pytest.approx(sweep[0.0]["metric"])
    assert "Certified threshold" in (out / "report.md").read_text()
    # A second run with the same command finds both stages done.
    again = _train(*args)
    assert again.returncode == 0
    assert json.loads((out / "report.json").read_text())["dev"] == report["dev"]
    # The evaluate CLI on the same dev rows gives the same sweep.
    done = _evaluate(
        f"--run_dir={out}", f"--data_file={glue_dir}/SST-2/dev.tsv", "--max_examples=200",
        "--thresholds=0,0.3,0.6,1", "--timing_examples=4", f"--output={tmp_path}/eval.json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Timing, the slow part, says where it is: a line per rule and batch size.
    assert "wall clock at batch 1, rule 2 of 4 (learned 0.3): " in done.stderr
    assert "wall clock at batch 32, rule 4 of 4 (learned 1.0): " in done.stderr
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    for got, want in zip(evaluated["sweep"], report["sweep"]):
        assert (got["metric"], got["exit_histogram"]) == (want["metric"], want["exit_histogram"])


def _evaluate(*args):
    return subprocess.run(
        [sys.executable, "-m", "msbert_tf.evaluate", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def _train_in_process(capsys, monkeypatch, *args):
    """The train CLI's main in this process, as `python -m msbert_tf.train` runs
    it: (exit code, stderr). Seconds cheaper than a subprocess per case."""
    from absl import flags

    from msbert_tf import cli, train

    monkeypatch.chdir(ROOT)
    try:
        code = cli.guarded(train.main)(flags.FLAGS(["msbert_tf.train", *args]))
    finally:
        flags.FLAGS.unparse_flags()
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--thresholds=0,1.5"], "must be in [0, 1], got 1.5"),
        (["--thresholds=fast"], "--thresholds must be numbers"),
        (["--uncertainty=topk", "--top_k=3"], "top_k must be between 2 and the number of labels (2)"),
        (["--uncertainty=patience", "--thresholds=0.5"], "the patience rule sweeps every patience"),
        (["--tolerances=0.1"], "--tolerances applies to regression tasks"),
        (["--uncertainty=fast"], "'fast'"),
    ],
)
def test_bad_thresholds_fail_before_training(tmp_path, capsys, monkeypatch, args, message):
    code, stderr = _train_in_process(capsys, monkeypatch, f"--output_dir={tmp_path / 'run'}", "--data_dir=../shared/data/glue", *args)
    assert code == 2 and message in stderr
    assert not (tmp_path / "run" / "teacher.weights.h5").exists()


def test_evaluate_refuses_a_run_without_heads(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    done = _evaluate(f"--run_dir={run}", "--data_file=x.tsv")
    assert done.returncode == 2 and "has no trained exit heads" in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task=sst3"], "unknown task 'sst3'"),
        (["--data_dir=/nonexistent"], "not found at /nonexistent/SST-2/train.tsv"),
        (["--backbone=no_such_preset_dir/"], "could not load backbone"),
        (["--max_seq_length=1000"], "above the backbone's maximum 512"),
        (["--distill_loss=mse"], "distill.loss='mse' is not one of"),
        (["--distill_temperature=0"], "distill.temperature must be positive, got 0.0"),
        (["--distill_loss=kl", "--loss=emd"], "--distill_loss is the earlier name of --loss: give one of them."),
        (["--thresholds=0.5", "--speeds=0.4"], "--speeds is the earlier name of --thresholds: give one of them."),
        (["--head_dim=127"], "model.head_dim must be a positive multiple of model.head_num_heads (2), got 127"),
        (["--config=configs/nope.json"], "config file configs/nope.json does not exist"),
        (["--task=stsb", "--uncertainty=learned"], "uncertainty=learned reads class probabilities; stsb is a regression"),
        (["--final_exits=7,8"], "final_exits=7,8 averages more exits than the model has (6): give whole numbers up to 6"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, capsys, monkeypatch, args, message):
    code, stderr = _train_in_process(capsys, monkeypatch, f"--output_dir={tmp_path / 'run'}", "--data_dir=../shared/data/glue", *args)
    assert code == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_the_command_exits_2_with_one_line_and_no_traceback(tmp_path):
    done = _train(f"--output_dir={tmp_path / 'run'}", "--task=sst3")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: unknown task 'sst3'")
    assert "Traceback" not in done.stderr


def test_flags_override_the_preset_file():
    from absl import flags

    from msbert_tf import train

    try:
        preset_file = os.path.join(ROOT, "configs", "sst2.json")
        flags.FLAGS(["msbert_tf.train", f"--config={preset_file}", "--head_dim=64", "--head_depth=2", "--distill_epochs=4"])
        config = train.resolve_config(flags.FLAGS)
    finally:
        flags.FLAGS.unparse_flags()
    with open(preset_file) as f:
        preset = json.load(f)
    assert (config.model.head_dim, config.model.head_depth, config.distill.epochs) == (64, 2, 4.0)
    assert config.teacher.learning_rate == preset["teacher"]["learning_rate"]


def test_an_optional_field_is_set_back_to_none_by_flag():
    from absl import flags

    from msbert_tf import train

    try:
        flags.FLAGS(["msbert_tf.train", "--config=sst2", "--max_calibration_examples=None", "--num_layers=3"])
        config = train.resolve_config(flags.FLAGS)
    finally:
        flags.FLAGS.unparse_flags()
    assert RunConfig.from_preset("sst2").data.max_calibration_examples == 4000
    assert (config.data.max_calibration_examples, config.model.num_layers) == (None, 3)
    with pytest.raises(flags.IllegalFlagValueError, match="invalid literal"):
        flags.FLAGS(["msbert_tf.train", "--max_calibration_examples=many"])
    flags.FLAGS.unparse_flags()


def test_every_config_field_has_one_flag_named_as_the_api_names_it():
    from absl import flags

    from msbert_tf import train
    from msbert_tf.config import RunConfig, setting_paths

    names = setting_paths()
    leaves = []

    def walk(values, prefix):
        for key, value in values.items():
            walk(value, f"{prefix}{key}.") if isinstance(value, dict) else leaves.append(prefix + key)

    walk(RunConfig().to_dict(), "")
    assert sorted(names.values()) == sorted(leaves)  # every field, once
    assert all(name in flags.FLAGS for name in names)
    try:
        flags.FLAGS(["msbert_tf.train", "--config=sst2", "--distill.epochs=4", "--teacher.learning_rate=3e-5",
                     "--loss=kl", "--bucket_boundaries=8,16", "--model.random_backbone.num_layers=3",
                     "--distill.seed=7", "--seed=5", "--nostrip_accents"])
        config = train.resolve_config(flags.FLAGS)
        flags.FLAGS.unparse_flags()
        # The API's keywords are the same names, to the same config.
        assert config == RunConfig.from_preset("sst2").replace(**{
            "distill.epochs": 4, "teacher.learning_rate": 3e-5, "loss": "kl", "bucket_boundaries": (8, 16),
            "model.random_backbone.num_layers": 3, "distill.seed": 7, "seed": 5, "strip_accents": False})
        assert (config.distill.epochs, config.data.bucket_boundaries, config.distill.seed) == (4.0, (8, 16), 7)
        # Earlier flag names still work as aliases.
        flags.FLAGS(["msbert_tf.train", "--distill_epochs=3", "--learning_rate=2e-5", "--distill_loss=ce"])
        old = train.resolve_config(flags.FLAGS)
        assert (old.distill.epochs, old.teacher.learning_rate, old.distill.loss) == (3.0, 2e-5, "ce")
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["msbert_tf.train", "--bucket_boundaries=8,x"])
        with pytest.raises(UserInputError, match="--bucket_boundaries: 'x' is not int"):
            train.resolve_config(flags.FLAGS)
    finally:
        flags.FLAGS.unparse_flags()


def test_replace_coerces_and_checks_as_a_file_does_and_copies():
    from msbert_tf.config import RunConfig

    config = RunConfig()
    changed = config.replace(**{"teacher.epochs": 1}, loss="kl")
    assert (changed.teacher.epochs, type(changed.teacher.epochs), changed.distill.loss) == (1.0, float, "kl")
    assert (config.teacher.epochs, config.distill.loss) == (2.0, "emd")  # the original is untouched
    with pytest.raises(UserInputError, match="config field data.batch_size must be int, got '32'"):
        config.replace(batch_size="32")
    with pytest.raises(UserInputError, match="distill.loss='mse' is not one of"):
        config.replace(loss="mse")
