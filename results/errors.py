"""The run dir's one error type."""


class ResultsError(Exception):
    """A run dir or result file that cannot be read or written: one line naming the file."""
