"""What every CLI shares: bad input is one `error:` line and exit code 2."""

import sys

from absl import app

from msbert_tf.errors import UserInputError


def run(main):
    """Runs an absl `main(argv)`; a UserInputError prints its message, no traceback."""

    def guarded(argv):
        if len(argv) > 1 and not getattr(main, "takes_arguments", False):
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            return main(argv) or 0
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    app.run(lambda argv: sys.exit(guarded(argv)))
