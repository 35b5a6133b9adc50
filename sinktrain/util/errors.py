"""The user-error marker, and the SIGTERM the CLI raises. The CLI prints ValueError, FileNotFoundError,
FileExistsError and any `UserError` as one line (exit 2); every other exception is an internal error and keeps its
traceback."""


class UserError(Exception):
    """An error caused by the user's input or environment whose message says what to do about it."""


class Terminated(KeyboardInterrupt):
    """A SIGTERM (a scheduler's time limit, `timeout`, `docker stop`), taken the way Ctrl-C is: the verb's clean-up
    runs on the way out (staging folders, temporary shards and transcripts, the output lock) instead of the
    process dying where it stands and leaving them for the next run to clear. A verb that ends its work on Ctrl-C
    (chat) must let this one through: it stops the run, it does not finish it."""
