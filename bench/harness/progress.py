"""Progress of a run on stderr: a bar with the current benchmark and the ETA (weighted by
each task's estimated time) on a terminal; one line per finished task elsewhere (CI logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyperf
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.harness.plan import Task
from bench.harness.summary import describe


class RunProgress:
    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()
        self.bar: Progress | None = None
        self.bar_task: TaskID | None = None
        self.total = 0
        self.done = 0
        self.weights: dict[Task, float] = {}

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, soft_wrap=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.say(f"  {name}: {time.monotonic() - start:.1f} s")

    def begin(self, total: int, already: int, weights: dict[Task, float]) -> None:
        self.total, self.done, self.weights = total, already, weights
        if already:
            self.say(f"resuming: {already} of {total} task(s) already done")
        if self.live:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console, transient=False)
            self.bar.start()
            # progress in estimated seconds, so the ETA follows the long tasks
            self.bar_task = self.bar.add_task("starting", total=sum(weights.values()) or 1)

    def task_started(self, task: Task) -> None:
        if self.bar is not None and self.bar_task is not None:
            self.bar.update(self.bar_task, description=escape(
                f"[{self.done + 1}/{self.total}] {task.label}"))

    def _finished(self, task: Task, line: str) -> None:
        self.done += 1
        if self.bar is not None and self.bar_task is not None:
            self.bar.advance(self.bar_task, self.weights.get(task, 0.0))
            self.bar.console.print(line, markup=False, soft_wrap=True)
        else:
            self.say(line)

    def task_done(self, task: Task, benchmark: pyperf.Benchmark, seconds: float) -> None:
        self._finished(task, f"[{self.done + 1}/{self.total}] {task.label}: "
                             f"{describe(benchmark)} in {seconds:.1f} s")

    def task_failed(self, task: Task, reason: str) -> None:
        self._finished(task, f"[{self.done + 1}/{self.total}] {task.label}: FAILED: {reason}")
