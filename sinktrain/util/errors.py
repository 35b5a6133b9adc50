"""The user-error marker. The CLI prints ValueError, FileNotFoundError, FileExistsError and any `UserError` as
one line (exit 2); every other exception is an internal error and keeps its traceback."""


class UserError(Exception):
    """An error caused by the user's input or environment whose message says what to do about it."""
