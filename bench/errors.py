"""The one exception type of the suite: its message is the one line a user sees."""


class VmvcError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero."""
