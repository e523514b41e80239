"""The one exception type of the image stage: its message is the one line a user sees.

image/ sits below bench/ and must not import it, so it has its own type; the ``vmvc`` CLI
prints it as one line and a non-zero exit, as it does bench's own errors.
"""


class ImageError(Exception):
    """A build or cache failure the user can act on (a missing tool, a full disk, a bad
    package name), said in one line."""
