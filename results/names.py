"""Benchmark names, the contract's ``<metric>:<workload>:<backend>``: composed and parsed
here only. A workload with several figures names each in its workload part as
``<workload>.<figure>`` (``burst:x4.each:crun``: each instance's own start time in a burst
of 4, beside ``burst:x4:crun``, the time until all 4 were up)."""

from __future__ import annotations

from dataclasses import dataclass

METRICS = ("startup", "boot-phase", "memory", "engine", "density", "burst", "cost",
           "isolation")


@dataclass(frozen=True)
class BenchmarkName:
    metric: str
    workload: str
    backend: str

    def __str__(self) -> str:
        return f"{self.metric}:{self.workload}:{self.backend}"


def compose(metric: str, workload: str, backend: str) -> str:
    return str(BenchmarkName(metric, workload, backend))


def parse(name: str) -> BenchmarkName | None:
    """The three parts of *name*; None for a name that is not the contract's (a foreign
    benchmark in a results file is skipped, not an error)."""
    parts = name.split(":")
    if len(parts) != 3 or not all(parts):
        return None
    return BenchmarkName(*parts)
