"""What a run measures: the suites' counts, and the plan of tasks in the order they run.

Tasks are grouped by metric and workload; within a group every selected backend runs in
turn (rotated each round), so peers are alternated and ratios hold while the machine's
speed drifts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from bench.backends.base import READY
from results import compose

STARTUP_WORKLOADS = {"true": ["true"], "ready": READY}


@dataclass(frozen=True)
class Counts:
    """pyperf's own knobs for one kind of benchmark (loops 0: pyperf calibrates)."""

    processes: int
    values: int
    warmups: int
    loops: int = 1


@dataclass(frozen=True)
class Suite:
    name: str
    startup: Counts
    memory: Counts  # values = idle instances measured per worker process
    cost: Counts
    vm_boots: int  # fixed count: each boot gives startup, boot-phase and memory values
    vm_cost_values: int
    vm_cost_warmups: int
    density_max: int  # 0: no density benchmarks
    settle_seconds: float  # idle time before a memory reading

    def as_json(self) -> dict:
        return asdict(self)


SUITES = {
    "quick": Suite("quick", startup=Counts(3, 3, 1, loops=0), memory=Counts(1, 3, 0),
                   cost=Counts(1, 2, 1), vm_boots=2, vm_cost_values=2, vm_cost_warmups=1,
                   density_max=0, settle_seconds=1.0),
    "full": Suite("full", startup=Counts(20, 3, 1, loops=0), memory=Counts(3, 3, 0),
                  cost=Counts(3, 3, 1), vm_boots=10, vm_cost_values=5, vm_cost_warmups=1,
                  density_max=32, settle_seconds=3.0),
}


def suite_with(name: str, density_max: int | None = None, vm_boots: int | None = None) -> Suite:
    suite = SUITES[name]
    if density_max is not None:
        suite = replace(suite, density_max=density_max)
    if vm_boots is not None:
        suite = replace(suite, vm_boots=vm_boots)
    return suite


@dataclass(frozen=True)
class Task:
    metric: str  # startup | memory | density | cost (boot-phase comes with the VM's startup)
    workload: str
    backend: str
    round: int

    @property
    def name(self) -> str:
        """The benchmark this task adds runs to (the contract's name)."""
        return compose(self.metric, self.workload, self.backend)

    @property
    def label(self) -> str:
        return f"{self.name} (round {self.round + 1})"


def build_plan(backends: list[str], workloads: list[str], suite: Suite, repeat: int,
               host_side: frozenset[str] = frozenset(),
               bridged: frozenset[str] = frozenset()) -> list[Task]:
    """Every task of the run, in order. The VM has no `ready` startup (its agent returns
    output only at exit) and its memory comes from its startup boots; workloads run from
    the host side (*host_side*) only on backends with the suite's bridge (*bridged*)."""
    groups: list[tuple[str, str, list[str]]] = []
    for workload in STARTUP_WORKLOADS:
        groups.append(("startup", workload,
                       [b for b in backends if not (b == "vm" and workload == "ready")]))
    groups.append(("memory", "idle", [b for b in backends if b != "vm"]))
    if suite.density_max > 0:
        groups.append(("density", "idle", list(backends)))
    for workload in workloads:
        groups.append(("cost", workload, [b for b in backends
                                          if workload not in host_side or b in bridged]))
    tasks = []
    for round_ in range(repeat):
        for metric, workload, members in groups:
            if not members:
                continue
            shift = round_ % len(members)
            for backend in members[shift:] + members[:shift]:
                tasks.append(Task(metric, workload, backend, round_))
    return tasks


def density_steps(maximum: int) -> list[int]:
    """1, 2, 4, 8, … up to *maximum* (and *maximum* itself)."""
    steps, n = [], 1
    while n < maximum:
        steps.append(n)
        n *= 2
    return [*steps, maximum] if maximum >= 1 else []
