"""What every CLI shares: bad input is one `error:` line and exit code 2."""

import errno
import logging
import os
import sys
import tempfile
import warnings

from absl import app, flags
from absl import logging as absl_logging

from msbert_tf.errors import UserInputError, as_os_error



def _asked_for_logs(argv):
    """Whether the command line sets absl's --verbosity (or -v) to 1 or more:
    read before the flags are parsed, as TensorFlow reads its log level when
    it is imported."""
    for i, arg in enumerate(argv):
        name, _, value = arg.partition("=")
        if name in ("--verbosity", "-v"):
            value = value or (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                return int(value) >= 1
            except ValueError:
                return False
    return False


# Set before any command module imports TensorFlow (each imports this first):
# TensorFlow's C++ lines only when asked for, by --verbosity or by the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if _asked_for_logs(sys.argv[1:]) else "3")


def _import_tensorflow_quietly():
    """TensorFlow 2.21 writes its start-up block (oneDNN, CUDA probes) twice,
    before its logger reads TF_CPP_MIN_LOG_LEVEL: six lines on every command.
    Imported here with the process's stderr set aside, unless the user asked
    for TensorFlow's logs (TF_CPP_MIN_LOG_LEVEL below 3); if the import
    fails, what it wrote is printed with the error."""
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3":
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            aside.seek(0)
            os.write(2, aside.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_import_tensorflow_quietly()

# Faults of the machine a user fixes, not a bug to report with a traceback.
_MACHINE_FAULTS = {
    errno.ENOSPC: "free some disk space",
    errno.EDQUOT: "free some disk space (quota)",
    errno.EROFS: "pick a folder on a writable file system",
    errno.EACCES: "pick a folder you may write to",
}


def guarded(main):
    """Wraps an absl `main(argv)` so that it returns the exit code: a
    UserInputError prints its message, no traceback, and gives 2."""

    def run_main(argv):
        if len(argv) > 1 and not getattr(main, "takes_arguments", False):
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            if flags.FLAGS.is_parsed():  # absl's app.run has parsed them; a test may call main directly
                _refuse_a_setting_given_twice(flags.FLAGS)
                if flags.FLAGS.verbosity < 1:
                    _keep_only_our_info_lines()
            return main(argv) or 0
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as error:
            e = as_os_error(error)
            if e is None or e.errno not in _MACHINE_FAULTS:
                raise
            where = f" writing {e.filename}" if e.filename else ""
            print(
                f"error: {e.strerror}{where}: {_MACHINE_FAULTS[e.errno]}, then run the same command again "
                "(training resumes from its last checkpoint; nothing finished is lost).",
                file=sys.stderr,
            )
            return 2

    return run_main


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _ours_or_a_warning(record):
    return record.levelno >= logging.WARNING or os.path.abspath(record.pathname).startswith(_PACKAGE)


def _keep_only_our_info_lines():
    """TensorFlow's own INFO lines (about 20 per export: savers, signatures,
    fingerprints, some through absl, some through its own handler) bury the
    command's; --verbosity=1 shows them. Warnings and errors always show."""
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    absl_logging.get_absl_handler().addFilter(_ours_or_a_warning)


def _refuse_a_setting_given_twice(flag_values):
    """A flag and its alias (an earlier name) both on the command line would
    silently keep the last one: refused, as the API refuses both keywords."""
    for name in flag_values:
        flag = flag_values[name]
        if type(flag).__name__ != "_FlagAlias" or not flag.present:
            continue
        original = flag.help.removeprefix("Alias for --").removesuffix(".")
        # Parsing an alias counts on the original flag too.
        if flag_values[original].present > flag.present:
            raise UserInputError(f"--{name} is the earlier name of --{original}: give one of them.")


def run(main):
    """Runs an absl `main(argv)` as a command: bad input exits 2 with one line.

    Quieter by default: TensorFlow's C++ log lines (a failed CUDA probe on a
    CPU machine, oneDNN notices, the start-up block, above) and its Python
    INFO lines are hidden unless --verbosity is 1 or more (or, for the C++
    lines, TF_CPP_MIN_LOG_LEVEL is set below 3); and
    Keras' warning that a tf.data stream ignores `shuffle` (ours are shuffled
    by the pipeline) is dropped.
    """
    warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
    try:
        app.run(lambda argv: sys.exit(guarded(main)(argv)))
    except SystemExit as e:
        # absl exits 1 after printing the help a user asked for: that is success.
        asked = any(arg in ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml") for arg in sys.argv[1:])
        raise SystemExit(0 if asked and e.code == 1 else e.code) from None
