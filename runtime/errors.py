"""The runtime's one exception type; the CLI prints its message as one line."""


class ContainerError(Exception):
    """A container or image operation that failed for a reason the user can act on."""
