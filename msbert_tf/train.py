r"""Train MS-BERT: teacher fine-tune, exit-head self-distillation, dev report.

    python -m msbert_tf.train --task=sst2 --data_dir=../shared/data/glue \
        --output_dir=runs/sst2
    python -m msbert_tf.train --task=custom --train_file=train.csv --dev_file=dev.csv \
        --text_column=review --label_column=stars --output_dir=runs/mine

Flags override the preset given by --config (a JSON file from configs/);
re-running with the same --output_dir resumes where the run stopped.
"""

import time

from absl import flags, logging

from msbert_tf import cli, eval_flags
from msbert_tf.config import RunConfig
from msbert_tf.errors import UserInputError

FLAGS = flags.FLAGS
# The evaluation's flags are this command's too: --help lists them.
flags.adopt_module_key_flags(eval_flags)
flags.DEFINE_string("config", None, "A run preset: its name (sst2) or a JSON file (configs/sst2.json).")
flags.DEFINE_string("output_dir", None, "Run folder: config, weights, checkpoints, logs, report.")
flags.DEFINE_string("task", None, "Task name, e.g. sst2.")
flags.DEFINE_string("data_dir", None, "GLUE-layout folder; without it, TFDS.")
flags.DEFINE_string("train_file", None, "--task=custom: training file (.csv, .tsv or .jsonl).")
flags.DEFINE_string("dev_file", None, "--task=custom: dev file, same columns.")
flags.DEFINE_string("text_column", None, "--task=custom: column of the text (default text).")
flags.DEFINE_string("text_pair_column", None, "--task=custom: column of a second text, for pairs.")
flags.DEFINE_string("label_column", None, "--task=custom: column of the label (default label).")
flags.DEFINE_string("backbone", None, "embedded:minilm_l6, a keras-hub preset or folder, or random.")
flags.DEFINE_string("head", None, "Exit head design: mlp or attention.")
flags.DEFINE_integer("head_dim", None, "Exit heads' width (attention heads: a multiple of their head count).")
flags.DEFINE_integer("head_depth", None, "Exit heads' depth: attention heads put depth-1 transformer blocks before their [CLS] "
                     "attention; mlp heads have depth dense(tanh) layers.")
flags.DEFINE_string("teacher_pooling", None, "What the teacher classifier reads: cls or mean.")
flags.DEFINE_string("distill_loss", None, "emd (MS-BERT), kl (FastBERT) or ce (DeeBERT-style).")
flags.DEFINE_string("emd_solver", None, "sinkhorn (native TF) or exact (POT).")
flags.DEFINE_string("emd_cost", None, "logits, hidden or both.")
flags.DEFINE_string("layer_weights", None, "EMD layer weights: uniform or learned (BERT-EMD).")
flags.DEFINE_float("teacher_epochs", None, "Stage-1 epochs (fractions allowed).")
flags.DEFINE_float("distill_epochs", None, "Stage-2 epochs (fractions allowed).")
flags.DEFINE_integer("batch_size", None, "Training batch size.")
flags.DEFINE_float("learning_rate", None, "Stage-1 (teacher) peak learning rate.")
flags.DEFINE_float("distill_learning_rate", None, "Stage-2 (heads) peak learning rate.")
flags.DEFINE_float("distill_temperature", None, "Stage-2 softmax temperature T of teacher and students.")
flags.DEFINE_integer("max_seq_length", None, "Tokens per example, [CLS] and [SEP] included.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training rows.")
flags.DEFINE_integer("max_eval_examples", None, "Use only the first N dev rows.")
flags.DEFINE_float("calibration_fraction", None, "Share of the training file held out (never trained on) to calibrate "
                   "the exit threshold; 0 holds nothing out (default 0.05).")
flags.DEFINE_integer("max_calibration_examples", None, "At most this many held-out calibration rows (default 4000).")
flags.DEFINE_enum("calibration_source", None, ["held_out", "held_out_sentences", "dev"], "Calibration rows: "
                  "held out of the training file (default), whole sentences held out with the phrases only they "
                  "contain (a file of phrases, as SST-2's), or the task's dev set.")
flags.DEFINE_string("calibration_file", None, "Calibrate on this file instead of a held-out slice: the task's layout, "
                    "or plain text (.txt) one example per line.")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_integer("distill_seed", None, "Stage 2's own random seed (default: --seed).")
flags.DEFINE_bool("jit_compile", None, "XLA for the train steps (--nojit_compile: off).")
flags.DEFINE_integer("checkpoint_every_steps", None, "Save resumable state every N steps.")
flags.DEFINE_string("teacher_from", None, "Reuse the fine-tuned teacher of this run folder.")
flags.DEFINE_string("strategy", None, "tf.distribute: default, mirrored, multi_worker (TF_CONFIG) or tpu.")
flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU's name or grpc:// address.")

# flag -> dotted config field it overrides.
OVERRIDES = {
    "task": "data.task",
    "data_dir": "data.data_dir",
    "train_file": "data.train_file",
    "dev_file": "data.dev_file",
    "text_column": "data.text_column",
    "text_pair_column": "data.text_pair_column",
    "label_column": "data.label_column",
    "backbone": "model.backbone",
    "head": "model.head",
    "head_dim": "model.head_dim",
    "head_depth": "model.head_depth",
    "teacher_pooling": "model.teacher_pooling",
    "distill_loss": "distill.loss",
    "emd_solver": "distill.emd_solver",
    "emd_cost": "distill.emd_cost",
    "layer_weights": "distill.layer_weights",
    "teacher_epochs": "teacher.epochs",
    "distill_epochs": "distill.epochs",
    "batch_size": "data.batch_size",
    "learning_rate": "teacher.learning_rate",
    "distill_learning_rate": "distill.learning_rate",
    "distill_temperature": "distill.temperature",
    "max_seq_length": "data.max_seq_length",
    "max_train_examples": "data.max_train_examples",
    "max_eval_examples": "data.max_eval_examples",
    "calibration_fraction": "data.calibration_fraction",
    "max_calibration_examples": "data.max_calibration_examples",
    "calibration_source": "data.calibration_source",
    "calibration_file": "data.calibration_file",
    "seed": "seed",
    "distill_seed": "distill.seed",
    "jit_compile": "jit_compile",
    "checkpoint_every_steps": "checkpoint_every_steps",
    "teacher_from": "teacher_from",
    "strategy": "strategy",
    "tpu": "tpu",
}


def resolve_config(flag_values):
    config = RunConfig.from_preset(flag_values.config) if flag_values.config else RunConfig()
    for flag, field in OVERRIDES.items():
        value = flag_values[flag].value
        if value is None:
            continue
        section, _, name = field.rpartition(".")
        target = getattr(config, section) if section else config
        setattr(target, name, value)
    return config.validate()


def main(argv):
    # Imported here so that --help and flag errors do not pay for TensorFlow.
    from msbert_tf import report
    from msbert_tf.data.readers import resolve_task
    from msbert_tf.inference.calibration import calibrate_after_training
    from msbert_tf.inference.evaluation import check_max_drop, evaluate, sweep_rules
    from msbert_tf.inference.loading import TrainedRun
    from msbert_tf.run_dir import RunDir
    from msbert_tf.training.trainer import train

    if not FLAGS.output_dir:
        raise UserInputError("--output_dir is required: the run folder to write (or resume).")
    config = resolve_config(FLAGS)
    start = time.time()
    task = resolve_task(config.data)
    # Bad thresholds fail now, not after an hour of training.
    check_max_drop(FLAGS.max_drop)
    sweep_rules(task, 2, **eval_flags.sweep_settings())
    result = train(config, FLAGS.output_dir)
    if not result.chief:
        logging.info("training done; the chief worker evaluates and writes the report.")
        return
    rules = sweep_rules(task, result.classifier.num_layers, **eval_flags.sweep_settings())
    evaluation = evaluate(
        result.classifier, result.dev_split, rules, FLAGS.max_drop,
        batch_size=config.data.eval_batch_size, timing_examples=FLAGS.timing_examples,
        metrics=task.metrics,
    )
    # The default threshold of predict and export: certified on held-out
    # rows; the dev pick above stays in the report, uncertified.
    calibration = calibrate_after_training(
        TrainedRun(config, result.task, result.classifier, result.preprocessor, RunDir(FLAGS.output_dir))
    )
    run_report = {
        "task": result.task.name,
        "examples": len(result.dev_split),
        **evaluation,
        "calibration": calibration,
        "stages": result.stages,
        "wall_seconds_this_invocation": round(time.time() - start, 1),
    }
    report.write_report(FLAGS.output_dir, run_report)
    logging.info("dev %s per exit: %s", evaluation["dev"]["metric"], evaluation["dev"]["exits"])
    print(report.markdown(run_report))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
