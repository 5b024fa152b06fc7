"""Classify raw sentences with early exit; prints one JSON object per line.

    python -m msbert_tf.predict --run_dir=runs/sst2 "a gripping film" "dull"
    python -m msbert_tf.predict --run_dir=runs/sst2 --input_file=sentences.txt --threshold=0.3
    python -m msbert_tf.predict --run_dir=runs/mrpc $'He left.\tHe went away.'

For a sentence-pair task, a tab separates the two texts of an example.

Without --threshold, the run's certified threshold (RUN/exit_threshold.json) is used.
"""

import json

from absl import flags

from msbert_tf import cli
from msbert_tf.errors import UserInputError
from msbert_tf import rule_flags
from msbert_tf.rule_flags import rule_settings

flags.DEFINE_string("run_dir", None, "A finished training run folder.")
flags.DEFINE_string("input_file", None, "A UTF-8 file with one text per line (pairs: text<TAB>text_pair).")
flags.adopt_module_key_flags(rule_flags)  # listed by --help
FLAGS = flags.FLAGS


def main(argv):
    from msbert_tf.inference.loading import load_run
    from msbert_tf.inference.predict import default_rule, from_lines, predict_texts

    if not FLAGS.run_dir:
        raise UserInputError("--run_dir is required.")
    texts = list(argv[1:])
    if FLAGS.input_file:
        try:
            with open(FLAGS.input_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"cannot read --input_file {FLAGS.input_file}: {e}") from None
        # A skipped line would shift every later result against its input.
        blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
        if blank:
            raise UserInputError(
                f"--input_file {FLAGS.input_file} has blank lines ({', '.join(map(str, blank[:5]))}): "
                "one example per line, remove them."
            )
        texts += lines
    if not texts:
        raise UserInputError("nothing to classify: pass texts as arguments or --input_file.")
    trained = load_run(FLAGS.run_dir)
    rule = default_rule(trained, **rule_settings())
    examples = from_lines(trained.task, texts)
    for example, result in zip(examples, predict_texts(trained, examples, rule)):
        shown = {"text": example[0], "text_pair": example[1]} if trained.task.is_pair else {"text": example}
        print(json.dumps({**shown, **result}))


main.takes_arguments = True  # the texts to classify


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
