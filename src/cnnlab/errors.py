"""The one exception type for errors a user can cause.

The CLI turns it into one line on stderr and exit code 2; library users catch it like any other.
"""


class CnnlabError(Exception):
    """A problem with the user's input: missing or corrupt data, a bad flag, an unknown class."""

    exit_code = 2


class DataUnavailable(CnnlabError):
    """The data set itself cannot be found or read: every further trial would fail the same way."""
