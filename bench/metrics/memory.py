"""``memory:idle:<backend>`` and ``memory:idle.pss:<backend>``: host memory one idle
instance costs, read after the suite's settle time, the same two ways for every backend
(bare too: it is accounted in a memory cgroup of its own, without limits): the usage of the
instance's memory cgroup, and the PSS of every process in it. The first counts what the
kernel charged the instance (page cache and kernel memory included), the second what its
processes map, shared pages split among their users; each backend names its cgroup.

pyperf's workers read them, each figure a task group of its own in the plan (the simplest
way that keeps one pyperf benchmark per task, its runs, failures and resume included): so
the two figures come from different idle instances, each a distribution of its own. A
booting backend's come from its startup boots, both from each boot (boot_phases.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance, MemoryReading
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext

if TYPE_CHECKING:
    from pyperf import Runner

PSS = "pss"  # the PSS figure, in the workload part: memory:idle.pss:<backend>
IDLE_WORKLOADS = ("idle", f"idle.{PSS}")
CGROUP_DEFINITION = ("usage of the instance's memory cgroup ({cgroup}): every page the kernel "
                     "charged to it, its processes' anonymous and file pages, page cache and "
                     "kernel memory (memory.usage_in_bytes on cgroup v1, memory.current on "
                     "v2); a page is charged to the cgroup that first used it, so the image's "
                     "files already cached by another instance are not counted here")
PSS_DEFINITION = ("sum of the PSS (/proc/PID/smaps_rollup) of every process in the instance's "
                  "memory cgroup ({cgroup}): the pages they map, shared ones split among "
                  "their users; page cache they do not map and kernel memory not counted")


def figure(workload: str, reading: MemoryReading) -> float:
    """The value of the benchmark *workload* (``idle`` or ``idle.pss``) in *reading*."""
    return float(reading.pss if workload.endswith(f".{PSS}") else reading.cgroup)


class Memory(Metric):
    name = "memory"
    unit, pyperf_unit, better = "bytes", "byte", "lower"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [(w, [b.name for b in plan.backends if not b.boot_phases])
                for w in IDLE_WORKLOADS]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        counts = run.suite.memory
        return counts.processes * (1 + counts.values * (run.suite.settle_seconds + 0.3))

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        template = PSS_DEFINITION if task.workload.endswith(f".{PSS}") else CGROUP_DEFINITION
        return template.format(cgroup=backend.memory_cgroup)

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        assert run.pyperf is not None
        return [run.pyperf(task, run.suite.memory, metadata[task.name])]

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        runner.bench_time_func(spec["name"], lambda loops: sum(
            figure(spec["workload"], measure.idle_memory(backend, spec["settle"]))
            for _ in range(loops)), metadata=spec["metadata"])


MEMORY = Memory()
