r"""Evaluate a trained run with early exit on any labelled file of its task.

    python -m msbert_tf.evaluate --run_dir=runs/sst2 \
        --data_file=../shared/data/glue/SST-2/dev.tsv --output=runs/sst2/eval/report.json

Writes the report (JSON), a Markdown table and the trade-off plot next to it.
"""

import os

from absl import flags

from msbert_tf import cli, eval_flags
from msbert_tf.errors import UserInputError

flags.DEFINE_string("run_dir", None, "A finished training run folder.")
flags.DEFINE_string("data_file", None, "Labelled file in the task's GLUE layout (e.g. its dev.tsv).")
flags.DEFINE_string("task", None, "Task of the file; must be the run's task (default: the run's).")
flags.DEFINE_string("output", None, "Report path (.json); default RUN/eval/report.json.")
flags.DEFINE_integer("max_examples", None, "Evaluate only the first N rows.")
FLAGS = flags.FLAGS
# The evaluation's flags are this command's too: --help lists them.
flags.adopt_module_key_flags(eval_flags)


def main(argv):
    from msbert_tf import report
    from msbert_tf.data import pipeline, readers
    from msbert_tf.inference.evaluation import evaluate
    from msbert_tf.inference.loading import load_run
    from msbert_tf.inference.predict import learned_weights
    from msbert_tf.run_dir import writable_folder

    if not FLAGS.run_dir or not FLAGS.data_file:
        raise UserInputError("--run_dir and --data_file are required.")
    if FLAGS.max_examples is not None and FLAGS.max_examples < 1:
        raise UserInputError(f"--max_examples must be at least 1, got {FLAGS.max_examples}.")
    output = FLAGS.output or os.path.join(FLAGS.run_dir, "eval", "report.json")
    folder, name = os.path.split(os.path.abspath(output))
    # Refused now, not after the evaluation's work.
    writable_folder(folder, "--output")
    trained = load_run(FLAGS.run_dir)
    if FLAGS.task and FLAGS.task != trained.task.name:
        raise UserInputError(f"--task={FLAGS.task} but {FLAGS.run_dir} was trained on {trained.task.name}.")
    examples = readers.read_file(trained.task, FLAGS.data_file).take(FLAGS.max_examples)
    if len(examples) == 0:
        raise UserInputError(f"{FLAGS.data_file} has no rows to evaluate (only a header?).")
    split = pipeline.encode(examples, trained.preprocessor, name=os.path.basename(FLAGS.data_file))
    weights = learned_weights(trained) if FLAGS.uncertainty == "learned" else None
    rules = eval_flags.rules_from_flags(trained.classifier.num_layers, trained.task, weights)
    result = evaluate(
        trained.classifier, split, rules, FLAGS.max_drop,
        batch_size=trained.config.data.eval_batch_size, timing_examples=FLAGS.timing_examples,
        metrics=trained.task.metrics,
    )
    full = {"task": trained.task.name, "data_file": FLAGS.data_file, "examples": len(split), **result}
    report.write_report(folder, full, prefix=os.path.splitext(name)[0])
    print(report.markdown(full))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
