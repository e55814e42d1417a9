"""The one exception type for errors a user can cause, and subclasses for callers that react
to a kind of error (a study worker stops when the data set is missing, say).

The CLI turns any of them into one line on stderr and exit code 2; library users catch
``CnnlabError`` like any other exception.
"""


class CnnlabError(Exception):
    """A problem with the user's input: missing or corrupt data, a bad flag, an unknown class."""

    exit_code = 2


class DataUnavailable(CnnlabError):
    """The data set itself cannot be found or read: every further trial would fail the same way."""


class DiskFull(CnnlabError):
    """The disk (or the user's quota) filled up while writing; nothing half-written is kept."""


class TrainingDiverged(CnnlabError):
    """The training loss stopped being a finite number (a learning rate far too high, say)."""
