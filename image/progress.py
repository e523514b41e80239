"""Progress of long steps on stderr: a live spinner with the step's latest line on a
terminal, one line per finished step elsewhere (CI logs), nothing with ``quiet``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


class StepProgress:
    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self._status = None
        self._name = ""

    def note(self, text: str) -> None:
        """A one-off message (e.g. a cache hit or a rebuild warning)."""
        if not self.quiet:
            self.console.print(text, markup=False, soft_wrap=True)

    def detail(self, text: str) -> None:
        """The current step's latest word (a tool's output line), shown while it runs."""
        if self._status is not None:
            self._status.update(escape(f"{self._name}: {text[:100]}"))

    @contextmanager
    def step(self, name: str) -> Iterator[StepProgress]:
        start = time.monotonic()
        self._name = name
        if not self.quiet and sys.stderr.isatty():
            with self.console.status(escape(name)) as status:
                self._status = status
                try:
                    yield self
                finally:
                    self._status = None
        else:
            yield self
        if not self.quiet:
            self.console.print(f"  {name}: {time.monotonic() - start:.1f} s", markup=False)
