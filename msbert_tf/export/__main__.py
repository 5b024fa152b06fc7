r"""Export a trained run for phones (per-stage LiteRT) and servers (SavedModel).

    python -m msbert_tf.export --run_dir=runs/sst2 --output_dir=runs/sst2/export \
        --formats=tflite,saved_model --quantize=none,dynamic,float16,int8

The bundle format and the app-side loop: export/README.md.
"""

from absl import flags

from msbert_tf import cli
from msbert_tf.errors import UserInputError
from msbert_tf import rule_flags
from msbert_tf.rule_flags import rule_settings

flags.DEFINE_string("run_dir", None, "A finished training run folder.")
flags.DEFINE_string("output_dir", None, "Where the bundles go (default RUN/export).")
flags.DEFINE_list("formats", ["tflite", "saved_model"], "tflite and/or saved_model.")
flags.DEFINE_list("quantize", ["none"], "LiteRT variants: none, dynamic (int8 weights), float16, int8 (int8 "
                 "weights and activations of the matrix products, calibrated on the run's training rows).")
flags.DEFINE_string("representative_file", None, "int8: calibrate on these rows instead (a text file, one example "
                    "per line; a pair task's two texts tab-separated).")
flags.DEFINE_integer("max_seq_length", None, "Tokenizer max length (default: the run's).")
flags.adopt_module_key_flags(rule_flags)  # listed by --help
FLAGS = flags.FLAGS


def main(argv):
    from msbert_tf import MSBert

    if not FLAGS.run_dir:
        raise UserInputError("--run_dir is required.")
    paths = MSBert.load(FLAGS.run_dir).export(
        FLAGS.output_dir, FLAGS.formats, FLAGS.quantize, FLAGS.max_seq_length,
        representative_file=FLAGS.representative_file, **rule_settings()
    )
    for path in paths:
        print(path)


def run():
    cli.run(main)


if __name__ == "__main__":
    run()
