"""``memory:idle:<backend>``: host memory one idle instance costs, read after the suite's
settle time (each backend's reading names its definition). pyperf's workers read it; a
booting backend's idle memory comes from its startup boots (boot_phases.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext

if TYPE_CHECKING:
    from pyperf import Runner


class Memory(Metric):
    name = "memory"
    unit, pyperf_unit, better = "bytes", "byte", "lower"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [("idle", [b.name for b in plan.backends if not b.boot_phases])]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        counts = run.suite.memory
        return counts.processes * (1 + counts.values * (run.suite.settle_seconds + 0.3))

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return backend.memory_definition

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        assert run.pyperf is not None
        return [run.pyperf(task, run.suite.memory, metadata[task.name])]

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        runner.bench_time_func(spec["name"], lambda loops: sum(
            measure.idle_memory(backend, spec["settle"])[0] for _ in range(loops)),
            metadata=spec["metadata"])


MEMORY = Memory()
