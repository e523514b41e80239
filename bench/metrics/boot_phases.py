"""``boot-phase:<phase>:<backend>``: where a VM's start goes (QEMU started, kernel, init,
agent, first command, and what a backend adds after the boot, as a container started in the
guest), from the backends whose instances boot (``Backend.boot_phases``, each phase with its
events in ``Backend.phase_events``; ``Backend.startup_phase`` is its startup figure).
It plans no task of its own: each boot of the startup task gives the startup value, one
value per phase and an idle memory reading, run with fixed counts in the harness's own
process (a boot is too long for pyperf's calibration); both idle memory figures come from
the same reading. The phase ``network_up`` (a NIC's address set, before the agent starts)
comes from the boots of a VM with a NIC, the cost metric's service boots (see cost.py)."""

from __future__ import annotations

import time

import pyperf

from bench.backends.base import Backend, uninterruptible
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
from results import RunClock
from vmdriver.vm import NETWORK_PHASE


class BootPhases(Metric):
    name = "boot-phase"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return []  # measured by the startup task's boots

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        return 0.0

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return dict([*backend.phase_events.items(), NETWORK_PHASE])[task.workload]

    def boot_benchmarks(self, task: Task, backend: Backend, run: RunContext) -> dict[str, dict]:
        """The startup task's benchmarks on a booting backend: startup, memory, phases."""
        from bench.metrics.memory import IDLE_WORKLOADS, MEMORY
        from bench.metrics.startup import STARTUP

        found = {task.name: STARTUP.metadata(task, backend, run)}
        for workload in IDLE_WORKLOADS:
            memory = Task(MEMORY.name, workload, backend.name, task.round)
            found[memory.name] = MEMORY.metadata(memory, backend, run)
        for phase in backend.phase_events:
            own = Task(self.name, phase, backend.name, task.round)
            found[own.name] = self.metadata(own, backend, run)
        return found

    def boots(self, backend: Backend, run: RunContext,
              metadata: dict[str, dict]) -> list[pyperf.Benchmark]:
        """``vm_boots`` boots, each giving a value to every benchmark in *metadata*."""
        from bench.metrics.memory import IDLE_WORKLOADS, MEMORY, figure

        runs: dict[str, list[pyperf.Run]] = {name: [] for name in metadata}
        for _ in range(run.suite.vm_boots):
            clock = RunClock()  # each value's run lasts the boot it came from
            with uninterruptible(), backend.start() as instance:
                phases = instance.phases
                time.sleep(run.suite.settle_seconds)
                memory = instance.memory()
            values = {f"startup:true:{backend.name}": phases[backend.startup_phase],
                      **{f"{MEMORY.name}:{w}:{backend.name}": figure(w, memory)
                         for w in IDLE_WORKLOADS},
                      **{f"{self.name}:{p}:{backend.name}": phases[p]
                         for p in backend.phase_events}}
            for name in runs:
                value = values.get(name)
                if value:
                    runs[name].append(clock.run([value], metadata[name]))
        return [pyperf.Benchmark(r) for r in runs.values() if r]


BOOT_PHASES = BootPhases()
