"""What a run measures: the suites' counts, and the plan of tasks in the order they run.

Tasks are grouped by metric and workload; within a group every selected backend runs in
turn (rotated each round), so peers are alternated and ratios hold while the machine's
speed drifts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from results import compose


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
    burst_sizes: tuple[int, ...] = ()  # N instances started at the same moment, per size
    bursts: int = 1  # bursts per size (each gives one all-ready value, N own start times)

    def as_json(self) -> dict:
        return asdict(self)


SUITES = {
    "quick": Suite("quick", startup=Counts(3, 3, 1, loops=0), memory=Counts(1, 3, 0),
                   cost=Counts(1, 2, 1), vm_boots=2, vm_cost_values=2, vm_cost_warmups=0,
                   density_max=0, settle_seconds=0.5, burst_sizes=(4,), bursts=1),
    "full": Suite("full", startup=Counts(20, 3, 1, loops=0), memory=Counts(3, 3, 0),
                  cost=Counts(3, 3, 1), vm_boots=10, vm_cost_values=5, vm_cost_warmups=1,
                  density_max=32, settle_seconds=3.0, burst_sizes=(1, 4, 16), bursts=3),
}


def suite_with(name: str, density_max: int | None = None, vm_boots: int | None = None,
               burst_max: int | None = None) -> Suite:
    suite = SUITES[name]
    if burst_max is not None:
        suite = replace(suite, burst_sizes=tuple(n for n in suite.burst_sizes if n <= burst_max))
    if density_max is not None:
        suite = replace(suite, density_max=density_max)
    if vm_boots is not None:
        suite = replace(suite, vm_boots=vm_boots)
    return suite


@dataclass(frozen=True)
class Task:
    metric: str  # startup | memory | engine | density | burst | cost (boot-phase: the VM's startup)
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
               bridged: frozenset[str] = frozenset(),
               metrics: list[str] | None = None) -> list[Task]:
    """Every task of the run, in order: each metric's groups (bench/metrics/ says which
    workloads and backends it measures), each group's backends rotated every round.
    Workloads in *host_side* run from the host, on the backends in *bridged* only; only
    the *metrics* named (None: all)."""
    from bench.backends import BACKENDS
    from bench.metrics import METRICS, PlanInputs

    inputs = PlanInputs([BACKENDS[b] for b in backends], list(workloads), suite,
                        frozenset(host_side), frozenset(bridged))
    groups = [(metric.name, workload, [b for b in members
                                       if runs_in_suite(BACKENDS[b], metric.name, suite)])
              for metric in METRICS.values() if metrics is None or metric.name in metrics
              for workload, members in metric.groups(inputs)]
    tasks = []
    for round_ in range(repeat):
        for metric, workload, members in groups:
            if not members:
                continue
            shift = round_ % len(members)
            for backend in members[shift:] + members[:shift]:
                tasks.append(Task(metric, workload, backend, round_))
    return tasks


def runs_in_suite(backend: type, metric: str, suite: Suite) -> bool:
    """Whether *backend* runs *metric* in *suite*: every metric, but a backend that names
    its quick metrics (``quick_metrics``) runs only those in the quick suite."""
    chosen = backend.quick_metrics
    if metric == "boot-phase":  # a boot's phases come with its startup
        metric = "startup"
    return suite.name != "quick" or chosen is None or metric in chosen

