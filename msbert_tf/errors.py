"""The one exception type the CLIs turn into a one-line message, and how a
fault of the machine is recognised wherever it is raised."""

import errno


class UserInputError(ValueError):
    """Bad input from the user: the message names the problem and the fix.

    CLIs catch it and print `error: <message>` without a traceback, so the
    message must be complete on its own.
    """


def as_os_error(error):
    """`error` as the file system's OSError, or None when it is not one:
    TensorFlow's C++ writers (SaveV2, for SavedModels and checkpoints) raise
    a full disk as an op error (ResourceExhaustedError) whose message alone
    carries the system's words."""
    if isinstance(error, OSError):
        return error
    if type(error).__module__.startswith("tensorflow") and "No space left on device" in str(error):
        return OSError(errno.ENOSPC, "No space left on device")
    return None
