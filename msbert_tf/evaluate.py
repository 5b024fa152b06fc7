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
flags.DEFINE_string("uncertainty", None, "Exit rule: entropy, topk, learned (fitted by calibrate) or patience "
                    "(regression: the only one); default: the run's certified one.")
FLAGS = flags.FLAGS
# The evaluation's flags are this command's too: --help lists them.
flags.adopt_module_key_flags(eval_flags)


def main(argv):
    from msbert_tf import report
    from msbert_tf.inference.evaluation import evaluate_file
    from msbert_tf.inference.loading import load_run
    from msbert_tf.run_dir import writable_folder

    if not FLAGS.run_dir or not FLAGS.data_file:
        raise UserInputError("--run_dir and --data_file are required.")
    output = FLAGS.output or os.path.join(FLAGS.run_dir, "eval", "report.json")
    folder, name = os.path.split(os.path.abspath(output))
    # Refused now, not after the evaluation's work.
    writable_folder(folder, "--output")
    trained = load_run(FLAGS.run_dir)
    if FLAGS.task and FLAGS.task != trained.task.name:
        raise UserInputError(f"--task={FLAGS.task} but {FLAGS.run_dir} was trained on {trained.task.name}.")
    result = evaluate_file(
        trained, FLAGS.data_file, max_drop=FLAGS.max_drop, max_examples=FLAGS.max_examples,
        timing_examples=FLAGS.timing_examples, **eval_flags.sweep_settings(FLAGS.uncertainty),
    )
    report.write_report(folder, result, prefix=os.path.splitext(name)[0])
    print(report.markdown(result))


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
