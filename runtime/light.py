"""Small stand-ins for stdlib helpers whose import costs the runtime's start-up (measured:
contextlib pulls in collections and functools, ~2 ms here)."""

from __future__ import annotations


class suppress:
    def __init__(self, *exceptions: type[BaseException]) -> None:
        self.exceptions = exceptions

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, self.exceptions)
