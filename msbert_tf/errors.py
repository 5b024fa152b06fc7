"""The one exception type the CLIs turn into a one-line message."""


class UserInputError(ValueError):
    """Bad input from the user: the message names the problem and the fix.

    CLIs catch it and print `error: <message>` without a traceback, so the
    message must be complete on its own.
    """
