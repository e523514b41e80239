"""The VM driver's one exception type; the CLI prints its message as one line."""


class VmError(Exception):
    """A VM operation that failed for a reason the user can act on."""
