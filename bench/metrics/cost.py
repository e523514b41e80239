"""``cost:<workload>:<backend>``: a workload's own figure (events/s, ns per call, Gbit/s…)
in one instance of each backend: isolation's cost where the work happens. pyperf's workers
run it (one instance per worker process, a fresh run of the command per value); an
expensive backend (a VM boot) runs it with fixed counts in the harness's own process.
Workloads driven from the host side run only on backends on the suite's bridge.

A workload with several figures (a service's throughput and latency percentiles, all from
one run of its client) makes one benchmark per figure, ``cost:<workload>.<figure>:<backend>``;
it runs in the harness's process with fixed counts (each value one run of the command, every
figure read from it), as an expensive backend does: pyperf's workers make one benchmark
each."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance, uninterruptible
from bench.backends.oci_bundle import cpu_list
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
from bench.workloads.spec import Figure, Workload
from results import RunClock

if TYPE_CHECKING:
    from pyperf import Runner


class Cost(Metric):
    name = "cost"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [(w, [b.name for b in plan.backends
                     if w not in plan.host_side or b.name in plan.bridged])
                for w in plan.workloads]

    def not_applicable(self, plan: PlanInputs) -> list[dict]:
        return [{"benchmark": f"{self.name}:{w}:{b.name}", "reason": f"{b.name} has no "
                 "network of the suite's own (bridge) for the host to reach"}
                for w in sorted(plan.host_side) for b in plan.backends
                if b.name not in plan.bridged]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        seconds = float(run.workloads[task.workload].params.get("seconds", {}).get(
            run.suite_name, 2))  # type: ignore[arg-type]
        if run.workloads[task.workload].several and not backend.expensive:
            counts = run.suite.cost
            return 2 + (counts.processes * counts.values + counts.warmups) * (seconds + 0.5)
        if backend.expensive:
            return run.boot_seconds + (run.suite.vm_cost_values + run.suite.vm_cost_warmups) \
                * (seconds + 1)
        counts = run.suite.cost
        return 2 + counts.processes * (counts.values + counts.warmups) * (seconds + 0.5)

    def figure(self, task: Task, run: RunContext) -> tuple[str, str, str]:
        figure = _figure_of(task, run)
        return figure.unit, "second" if figure.unit == "s" else "integer", \
            "higher" if figure.higher_is_better else "lower"

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        name, _, part = task.workload.partition(".")
        workload, figure = run.workloads[name], _figure_of(task, run)
        return (f"{workload.description}: "
                + (f"figure {part}, " if part else "") + f"{figure.kind} figure"
                + (f" ({figure.unit})" if figure.kind != "wall" else "")
                + ", one fresh run of the command per value in one instance of the backend"
                + (f"; {pinning()}" if workload.host_command else ""))

    def key(self, task: Task, run: RunContext) -> str:
        workload = run.workloads[task.workload]
        return _per_figure(task, run)[0].name if workload.several else task.name

    def benchmarks(self, task: Task, backend: Backend, run: RunContext) -> dict[str, dict]:
        workload = run.workloads[task.workload]
        found = super().benchmarks(task, backend, run) if not workload.several else \
            {one.name: self.metadata(one, backend, run) for one in _per_figure(task, run)}
        phase = _network_phase(task, backend, run)
        if phase is not None:
            from bench.metrics.boot_phases import BOOT_PHASES

            found[phase.name] = BOOT_PHASES.metadata(phase, backend, run)
        return found

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        workload = run.workloads[task.workload]
        if not backend.expensive and not workload.several:
            assert run.pyperf is not None
            return [run.pyperf(task, run.suite.cost, metadata[task.name])]
        assert run.backend_context is not None
        if backend.expensive:  # one boot for all values
            values, warmups = run.suite.vm_cost_values, run.suite.vm_cost_warmups
        else:
            counts = run.suite.cost
            values, warmups = counts.processes * counts.values, counts.warmups
        clock = RunClock()
        made: list[Instance] = []
        try:
            with uninterruptible():
                instance, host = start(backend, run.backend_context, workload, made)
                warm = [measure.figures(instance, workload, run.suite_name, host)
                        for _ in range(warmups)]
                read = [measure.figures(instance, workload, run.suite_name, host)
                        for _ in range(values)]
        finally:
            for one in made:
                one.stop()
        clock.stop()
        names = [one.name for one in _per_figure(task, run)] if workload.several \
            else [task.name]
        found = [pyperf.Benchmark([clock.run([r[figure] for r in read], metadata[name],
                                             [w[figure] for w in warm], 1 / len(names))])
                 for figure, name in zip(workload.figures, names, strict=True)]
        phase = _network_phase(task, backend, run)
        seconds = getattr(instance, "phases", {}).get("network_up")
        if phase is not None and seconds:  # one value per boot, its time in the figures'
            found.append(pyperf.Benchmark([clock.run([seconds], metadata[phase.name], [],
                                                     share=0.0)]))
        return found

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        from bench.workloads import load_workloads

        workload = load_workloads()[spec["workload"]]

        def one(loops: int) -> float:
            with uninterruptible():
                instance, host = start(backend, context, workload, made)
            return sum(measure.cost(instance, workload, spec["suite"], host)
                       for _ in range(loops))

        runner.bench_time_func(spec["name"], one, metadata=spec["metadata"])


def _network_phase(task: Task, backend: Backend, run: RunContext) -> Task | None:
    """A booting backend's service boots have a NIC: each gives ``boot-phase:network_up``
    a value (the startup boots have none, so their phases stay comparable)."""
    if backend.boot_phases and run.workloads[task.workload].host_command:
        return Task("boot-phase", "network_up", backend.name, task.round)
    return None


def _figure_of(task: Task, run: RunContext) -> Figure:
    """The figure a task's benchmark records: the workload's one, or the one its workload
    part names (``<workload>.<figure>``)."""
    name, _, part = task.workload.partition(".")
    return run.workloads[name].figures[part]


def _per_figure(task: Task, run: RunContext) -> list[Task]:
    """One task per figure of a multi-figure workload: their names are its benchmarks'."""
    return [Task(task.metric, f"{task.workload}.{figure}", task.backend, task.round)
            for figure in run.workloads[task.workload].figures]


def start(backend: Backend, context: BackendContext, workload: Workload,
          made: list[Instance]) -> tuple[Instance, Instance | None]:
    """The workload's instance and, for a host-side workload, the host end (a bare instance:
    the image's client in the host's network), each appended to *made* as it starts (the
    caller stops them); those of *made* when it has them already."""
    from bench.backends.bare import BareBackend

    if not made:
        bridged = bool(workload.host_command)
        server, client = service_cpus() if bridged else (None, None)
        made.append(backend.start(network="bridge" if bridged else "none", cpus=server))
        if bridged:
            made.append(BareBackend(context).host_side(made[0], client))
    return made[0], made[1] if len(made) > 1 else None


def service_cpus(available: set[int] | None = None) -> tuple[set[int] | None,
                                                               set[int] | None]:
    """The CPUs of a service's instance and of its client: the client gets the last CPU the
    harness may use, the instance the others, so neither steals the other's CPU (as IBM's
    client ran on a machine of its own); with one CPU there is nothing to split (None)."""
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


def pinning() -> str:
    """How a service run is pinned, for its definition."""
    server, client = service_cpus()
    if server is None or client is None:
        return "instance and client share the host's one CPU"
    return f"instance on CPU {cpu_list(server)}, client on CPU {cpu_list(client)}"


COST = Cost()
