r"""Train MS-BERT: teacher fine-tune, exit-head self-distillation, dev report.

    python -m msbert_tf.train --task=sst2 --data_dir=../shared/data/glue \
        --output_dir=runs/sst2
    python -m msbert_tf.train --task=custom --train_file=train.csv --dev_file=dev.csv \
        --text_column=review --label_column=stars --output_dir=runs/mine

Flags override the preset given by --config (a JSON file from configs/);
re-running with the same --output_dir resumes where the run stopped.
"""

import dataclasses
import time

from absl import flags, logging

from msbert_tf import cli, eval_flags
from msbert_tf.config import RunConfig, setting_paths, setting_type
from msbert_tf.errors import UserInputError

FLAGS = flags.FLAGS
# The evaluation's flags are this command's too: --help lists them.
flags.adopt_module_key_flags(eval_flags)
flags.DEFINE_string("config", None, "A run preset: its name (sst2) or a JSON file (configs/sst2.json).")
flags.DEFINE_string("output_dir", None, "Run folder: config, weights, checkpoints, logs, report.")

# One flag per config field, named as `setting_paths()` names it (and as the
# API's keywords are): the field's own name, or its dotted path where
# sections share it. Unset flags keep the preset's value.
HELP = {
    "data.task": "Task name: sst2, trec6, mrpc, stsb, ... or custom.",
    "data.data_dir": "GLUE-layout folder; without it, TFDS.",
    "data.max_seq_length": "Tokens per example, [CLS] and [SEP] included.",
    "data.batch_size": "Training batch size.",
    "data.eval_batch_size": "Evaluation and calibration batch size.",
    "data.max_train_examples": "Use only the first N training rows.",
    "data.max_eval_examples": "Use only the first N dev rows.",
    "data.calibration_fraction": "Share of the training file held out (never trained on) to calibrate the exit "
                                 "threshold; 0 holds nothing out.",
    "data.max_calibration_examples": "At most this many held-out calibration rows.",
    "data.calibration_source": "Calibration rows: held_out of the training file, held_out_sentences (whole "
                               "sentences with the phrases only they contain: a file of phrases, as SST-2's), or dev.",
    "data.calibration_file": "Calibrate on this file instead of a held-out slice: the task's layout, or plain text "
                             "(.txt) one example per line.",
    "data.bucket_boundaries": "Length buckets (comma-separated token counts): batches pad to their bucket.",
    "data.train_file": "--task=custom: training file (.csv, .tsv or .jsonl).",
    "data.dev_file": "--task=custom: dev file, same columns.",
    "data.text_column": "--task=custom: column of the text.",
    "data.text_pair_column": "--task=custom: column of a second text, for pairs.",
    "data.label_column": "--task=custom: column of the label.",
    "data.label_names": "--task=custom: the labels, comma-separated (found in the training file if unset).",
    "model.backbone": "embedded:minilm_l6, a keras-hub preset or folder, or random.",
    "model.gelu": "Feed-forward GELU: auto (as the checkpoint says), exact or tanh.",
    "model.num_layers": "Keep only the backbone's first N layers.",
    "model.strip_accents": "Strip accents before WordPiece (uncased checkpoints).",
    "model.head": "Exit head design: mlp or attention.",
    "model.head_dim": "Exit heads' width (attention heads: a multiple of their head count).",
    "model.head_num_heads": "Attention exit heads' head count.",
    "model.head_depth": "Exit heads' depth: attention heads put depth-1 transformer blocks before their [CLS] "
                        "attention; mlp heads have depth dense(tanh) layers.",
    "model.dropout": "Dropout of the teacher classifier and the exit heads.",
    "model.teacher_pooling": "What the teacher classifier reads: cls or mean.",
    "teacher.epochs": "Stage-1 (teacher) epochs (fractions allowed).",
    "teacher.learning_rate": "Stage-1 (teacher) peak learning rate.",
    "teacher.warmup_ratio": "Stage-1 share of steps warming the learning rate up.",
    "teacher.weight_decay": "Stage-1 AdamW weight decay.",
    "teacher.train_token_embedding": "Stage 1 trains the token embedding too.",
    "distill.loss": "Stage-2 loss: emd (MS-BERT), kl (FastBERT) or ce (DeeBERT-style).",
    "distill.epochs": "Stage-2 (exit heads) epochs (fractions allowed).",
    "distill.learning_rate": "Stage-2 (exit heads) peak learning rate.",
    "distill.warmup_ratio": "Stage-2 share of steps warming the learning rate up.",
    "distill.temperature": "Stage-2 softmax temperature T of teacher and students.",
    "distill.alpha": "Weight of the KL term (emd loss).",
    "distill.beta": "Weight of the EMD term (emd loss).",
    "distill.emd_cost": "EMD ground cost: logits, hidden or both.",
    "distill.emd_solver": "sinkhorn (native TF) or exact (POT, on the host).",
    "distill.layer_weights": "EMD layer weights: uniform or learned (BERT-EMD).",
    "distill.layer_weight_temperature": "Temperature of the learned EMD layer weights.",
    "distill.sinkhorn_epsilon": "Sinkhorn entropic regularisation.",
    "distill.sinkhorn_iterations": "Sinkhorn iterations.",
    "distill.disagreement_penalty": "Weight pushing exits that disagree with the teacher toward uniform (0: off).",
    "distill.seed": "Stage 2's own random seed (default: --seed).",
    "seed": "Random seed.",
    "checkpoint_every_steps": "Save resumable state every N steps.",
    "jit_compile": "XLA for the train steps (--nojit_compile: off).",
    "teacher_from": "Reuse the fine-tuned teacher of this run folder.",
    "strategy": "tf.distribute: default, mirrored, multi_worker (TF_CONFIG) or tpu.",
    "tpu": "--strategy=tpu: the TPU's name or grpc:// address.",
    "uncertainty": "Exit rule certified at the end and swept on dev: entropy, topk, patience or learned (fitted "
                   "then); default: entropy (regression: patience).",
    "final_exits": "Final predictions the certificate at the end tries: k is the mean of the last k exits, 1 "
                   "the last exit alone; more than one is paid for in confidence.",
}
# Flag names of earlier versions, kept working: old name -> setting name.
ALIASES = {
    "distill_loss": "loss",
    "teacher_epochs": "teacher.epochs",
    "distill_epochs": "distill.epochs",
    "learning_rate": "teacher.learning_rate",
    "distill_learning_rate": "distill.learning_rate",
    "distill_temperature": "temperature",
    "distill_seed": "distill.seed",
}
_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool,
           tuple: flags.DEFINE_list}
_PARSERS = {str: flags.ArgumentParser, int: flags.IntegerParser, float: flags.FloatParser, tuple: flags.ListParser}
_SERIALIZERS = {tuple: flags.CsvListSerializer(",")}
# A flag's None means "not given"; `--field=none` sets an Optional field to None.
NONE = "none"


class _NoneMarker:
    def __repr__(self):
        return NONE


TO_NONE = _NoneMarker()


def _or_none(parser_class):
    class OrNone(parser_class):
        def parse(self, argument):
            if isinstance(argument, str) and argument.strip().lower() == NONE:
                return TO_NONE
            return super().parse(argument)

    return OrNone()


def _define_setting_flags():
    for name, path in setting_paths().items():
        kind, _, default, optional = setting_type(path)
        help_text = HELP.get(path, f"Config field {path}.")
        if default is not None and default != ():
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            help_text += f" Without a preset: {shown}."
        if optional:
            help_text += f" --{name}={NONE} sets it to none."
            flags.DEFINE(_or_none(_PARSERS[kind]), name, None, help_text,
                         serializer=_SERIALIZERS.get(kind, flags.ArgumentSerializer()))
        else:
            _DEFINE[kind](name, None, help_text)
    for old, name in ALIASES.items():
        flags.DEFINE_alias(old, name)


_define_setting_flags()


def resolve_config(flag_values):
    """The preset of --config (or the defaults) with every flag given applied."""
    config = RunConfig.from_preset(flag_values.config) if flag_values.config else RunConfig()
    settings = {}
    for name, path in setting_paths().items():
        value = flag_values[name].value
        if value is TO_NONE:
            settings[name] = None
        elif value is not None:
            _, element, _, _ = setting_type(path)
            settings[name] = [_element(element, v, name) for v in value] if isinstance(value, list) else value
    return config.replace(**settings)


def _element(kind, text, name):
    try:
        return kind(text)
    except ValueError:
        raise UserInputError(f"--{name}: {text!r} is not {kind.__name__}.") from None


def main(argv):
    # Imported here: the library's heavier modules load only when a command runs.
    from msbert_tf import report
    from msbert_tf.data.readers import resolve_task
    from msbert_tf.inference.calibration import calibrate_after_training
    from msbert_tf.inference.evaluation import check_max_drop, evaluate, sweep_rules
    from msbert_tf.inference.loading import TrainedRun
    from msbert_tf.inference.predict import learned_weights
    from msbert_tf.run_dir import RunDir
    from msbert_tf.training.trainer import check_task_settings, train

    if not FLAGS.output_dir:
        raise UserInputError("--output_dir is required: the run folder to write (or resume).")
    config = resolve_config(FLAGS)
    start = time.time()
    task = resolve_task(config.data)
    # Bad settings and thresholds fail now, not after an hour of training;
    # the learned rule's thresholds are entropy's, checked so before its
    # weights exist.
    check_task_settings(config, task)
    check_max_drop(FLAGS.max_drop)
    early = "entropy" if config.uncertainty == "learned" else config.uncertainty
    sweep_rules(task, 2, **eval_flags.sweep_settings(early))
    result = train(config, FLAGS.output_dir)
    if not result.chief:
        logging.info("training done; the chief worker evaluates and writes the report.")
        return
    # The default threshold of predict and export: certified on held-out
    # rows; the dev pick below stays in the report, uncertified.
    trained = TrainedRun(config, result.task, result.classifier, result.preprocessor, RunDir(FLAGS.output_dir))
    calibration = calibrate_after_training(trained, top_k=FLAGS.top_k)
    # The sweep reads the rule and final prediction calibration chose, as `evaluate` does.
    uncertainty, final_exits = calibration["uncertainty"], calibration["final_exits"]
    weights = learned_weights(trained, final_exits) if uncertainty == "learned" else None
    rules = [
        dataclasses.replace(rule, final_exits=final_exits)
        for rule in sweep_rules(task, result.classifier.num_layers, **eval_flags.sweep_settings(uncertainty),
                                weights=weights)
    ]
    evaluation = evaluate(
        result.classifier, result.dev_split, rules, FLAGS.max_drop,
        batch_size=config.data.eval_batch_size, timing_examples=FLAGS.timing_examples,
        metrics=task.metrics,
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
