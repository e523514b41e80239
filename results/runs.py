"""pyperf runs made outside pyperf's workers (VM boots, VM workloads, density steps) that
say when they ran and how long they took, as a worker's runs do: without ``duration``
pyperf's CLI takes the sum of a run's values for it (bytes read as seconds)."""

from __future__ import annotations

import datetime
import time

import pyperf


class RunClock:
    """Started when made; :meth:`run` stamps a run with that date and the time until
    :meth:`stop` (or until now)."""

    def __init__(self) -> None:
        self.date = datetime.datetime.now().isoformat(" ")  # pyperf's own format: local time
        self.started = time.monotonic()
        self.ended: float | None = None

    def stop(self) -> RunClock:
        self.ended = time.monotonic()
        return self

    def run(self, values: list[float], metadata: dict,
            warmups: list[float] | None = None, share: float = 1.0) -> pyperf.Run:
        """A run of *values*; *share* of the time when one measurement made several
        benchmarks (a figure of *n* from one run of a service: 1/n), so pyperf's total
        duration stays the run's."""
        ended = self.ended if self.ended is not None else time.monotonic()
        timing = {"date": self.date, "duration": (ended - self.started) * share}
        return pyperf.Run(values, warmups=[(1, w) for w in warmups or []],
                          metadata={"loops": 1, **metadata, **timing})


def untimed(benchmark: pyperf.Benchmark) -> int:
    """How many of *benchmark*'s runs lack their date or duration."""
    return sum(not {"date", "duration"} <= set(run.get_metadata())
               for run in benchmark.get_runs())
