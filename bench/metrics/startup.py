"""``startup:<true|ready>:<backend>``: from "start requested" to the exit of ``true``, or to
the first line (``ready``) of a long-running process. pyperf's worker processes time it
(loops calibrated); a backend whose instances boot (the VM) gives its startup through its
boots instead, with their phases and an idle memory reading (boot_phases.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import READY, Backend, BackendContext, Instance
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext

if TYPE_CHECKING:
    from pyperf import Runner

WORKLOADS = {"true": ["true"], "ready": READY}


class Startup(Metric):
    name = "startup"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [("true", [b.name for b in plan.backends]),
                ("ready", [b.name for b in plan.backends if b.ready])]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        if backend.boot_phases:
            return run.suite.vm_boots * (run.boot_seconds + run.suite.settle_seconds)
        return 3.0 + run.suite.startup.processes * 1.2

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return backend.startup_definition if task.workload == "true" \
            else backend.ready_definition

    def benchmarks(self, task: Task, backend: Backend, run: RunContext) -> dict[str, dict]:
        if backend.boot_phases:
            from bench.metrics.boot_phases import BOOT_PHASES

            return BOOT_PHASES.boot_benchmarks(task, backend, run)
        return super().benchmarks(task, backend, run)

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        if backend.boot_phases:
            from bench.metrics.boot_phases import BOOT_PHASES

            return BOOT_PHASES.boots(backend, run, metadata)
        assert run.pyperf is not None
        return [run.pyperf(task, run.suite.startup, metadata[task.name])]

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        argv = WORKLOADS[spec["workload"]]
        runner.bench_time_func(spec["name"], lambda loops: measure.startup(
            backend, spec["workload"], argv, loops), metadata=spec["metadata"])


STARTUP = Startup()
