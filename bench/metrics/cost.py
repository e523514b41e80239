"""``cost:<workload>:<backend>``: a workload's own figure (events/s, ns per call, Gbit/s…)
in one instance of each backend: isolation's cost where the work happens. pyperf's workers
run it (one instance per worker process, a fresh run of the command per value); an
expensive backend (a VM boot) runs it with fixed counts in the harness's own process.
Workloads driven from the host side run only on backends on the suite's bridge."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance, uninterruptible
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
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
        if backend.expensive:
            return run.boot_seconds + (run.suite.vm_cost_values + run.suite.vm_cost_warmups) \
                * (seconds + 1)
        counts = run.suite.cost
        return 2 + counts.processes * (counts.values + counts.warmups) * (seconds + 0.5)

    def figure(self, task: Task, run: RunContext) -> tuple[str, str, str]:
        figure = run.workloads[task.workload].figure
        return figure.unit, "second" if figure.unit == "s" else "integer", \
            "higher" if figure.higher_is_better else "lower"

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        workload = run.workloads[task.workload]
        return (f"{workload.description}: {workload.figure.kind} figure"
                + (f" ({workload.figure.unit})" if workload.figure.kind != "wall" else "")
                + ", one fresh run of the command per value in one instance of the backend")

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        if not backend.expensive:
            assert run.pyperf is not None
            return [run.pyperf(task, run.suite.cost, metadata[task.name])]
        workload = run.workloads[task.workload]
        clock = RunClock()
        with uninterruptible(), backend.start() as instance:  # one boot for all values
            warm = [measure.cost(instance, workload, run.suite_name)
                    for _ in range(run.suite.vm_cost_warmups)]
            figures = [measure.cost(instance, workload, run.suite_name)
                       for _ in range(run.suite.vm_cost_values)]
        return [pyperf.Benchmark([clock.run(figures, metadata[task.name], warm)])]

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        from bench.backends.bare import BareBackend
        from bench.workloads import load_workloads

        workload = load_workloads()[spec["workload"]]

        def one(loops: int) -> float:
            if not made:
                bridged = bool(workload.host_command)
                with uninterruptible():
                    made.append(backend.start(network="bridge" if bridged else "none"))
                    if bridged:  # the image's client on the host, in the host's network
                        made.append(BareBackend(context).start())
            instance, host = made[0], made[1] if len(made) > 1 else None
            return sum(measure.cost(instance, workload, spec["suite"], host)
                       for _ in range(loops))

        runner.bench_time_func(spec["name"], one, metadata=spec["metadata"])


COST = Cost()
