"""What every CLI shares: bad input is one `error:` line and exit code 2."""

import sys

from absl import app

from msbert_tf.errors import UserInputError


def guarded(main):
    """Wraps an absl `main(argv)` so that it returns the exit code: a
    UserInputError prints its message, no traceback, and gives 2."""

    def run_main(argv):
        if len(argv) > 1 and not getattr(main, "takes_arguments", False):
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            return main(argv) or 0
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run_main


def run(main):
    """Runs an absl `main(argv)` as a command: bad input exits 2 with one line."""
    app.run(lambda argv: sys.exit(guarded(main)(argv)))
