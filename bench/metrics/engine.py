"""``engine:idle.pss:<backend>``: what an engine's daemons cost the host with no container
of the suite's running, the fixed cost every container on that host shares (Docker:
dockerd and containerd). The per-container part (the shim, conmon) is in the instance's
own memory figure; a daemonless engine (podman) has no fixed part, and the manifest says so.

It checks the claim "containers save resources by using the Docker daemon" with the
daemon's own numbers: that cost is paid once per host, and an instance pays its shim on top.
Read by pyperf's workers like the memory metric: the PSS of every process of the daemons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyperf

from bench.backends.base import Backend, BackendContext, Instance, pss_bytes
from bench.errors import VmvcError
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext

if TYPE_CHECKING:
    from pyperf import Runner

WORKLOAD = "idle.pss"
DEFINITION = ("sum of the PSS (/proc/PID/smaps_rollup) of the engine's daemons ({daemons}) "
              "with no container of the suite's running: the fixed cost all of the host's "
              "containers share; what each container adds (its {monitor}) is in "
              "memory:idle.pss")


def daemon_pss(names: tuple[str, ...]) -> int:
    """The PSS of every process whose command name is one of *names*."""
    from pathlib import Path

    total, found = 0, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in names:
                total += pss_bytes(int(entry.name))
                found.add(comm)
        except (OSError, VmvcError):  # gone meanwhile
            continue
    if missing := set(names) - found:
        raise VmvcError(f"engine daemons not running: {', '.join(sorted(missing))}")
    return total


class EngineCost(Metric):
    name = "engine"
    unit, pyperf_unit, better = "bytes", "byte", "lower"

    def groups(self, plan: PlanInputs) -> list[Group]:
        with_daemons = [b.name for b in plan.backends if b.daemons]
        return [(WORKLOAD, with_daemons)] if with_daemons else []

    def not_applicable(self, plan: PlanInputs) -> list[dict]:
        return [{"benchmark": f"{self.name}:{WORKLOAD}:{b.name}",
                 "reason": f"{b.name} runs no daemon: nothing is shared between its "
                           f"containers beyond what each one's {b.monitor} costs"}
                for b in plan.backends if b.monitor and not b.daemons]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        counts = run.suite.memory
        return counts.processes * (1 + counts.values * 0.1)

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return DEFINITION.format(daemons=", ".join(backend.daemons), monitor=backend.monitor)

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        assert run.pyperf is not None
        return [run.pyperf(task, run.suite.memory, metadata[task.name])]

    def bench(self, runner: Runner, spec: dict, backend: Backend, context: BackendContext,
              made: list[Instance]) -> None:
        runner.bench_time_func(spec["name"], lambda loops: sum(
            float(daemon_pss(backend.daemons)) for _ in range(loops)),
            metadata=spec["metadata"])


ENGINE = EngineCost()
