"""``isolation:audit:<backend>``: how strongly a backend keeps an instance from the host,
beside what it costs. The audit's probe (bench/audit) runs once per round in one idle
instance, with no network of the suite's (the configuration the other metrics measure);
each of its checks answers yes or no with its evidence.

The benchmark's value is how many checks isolate (a count: higher is better); the answers,
each with its evidence, are its ``vmvc_audit`` metadata (JSON), which the report's matrix
shows. The probe runs in the harness's own process: one reading per round, not a
distribution, and the marks it looks for (a host process, a loopback listener) live here.
"""

from __future__ import annotations

import json

import pyperf

from bench.audit import CHECKS, PROBE, HostMarks, host_facts, judge, parse_probe
from bench.backends.base import Backend, Instance, uninterruptible
from bench.errors import VmvcError
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
from results import RunClock

WORKLOAD = "audit"
PROBE_TIMEOUT = 60.0
DEFINITION = (f"checks of {len(CHECKS)} that keep the instance from the host, by a probe run "
              "in one idle instance with no network of the suite's (POSIX sh and busybox): "
              "own kernel (boot id), the host's processes, mounts, network stack and hostname "
              "(namespace ids, a marker process, a listener on the host's 127.0.0.1), and what "
              "it may do to its kernel (CAP_SYS_ADMIN, seccomp, no_new_privs, a module load, "
              "device nodes, /proc/sys): those count as isolating when the kernel is its own")


def audit(instance: Instance, what: str) -> list[dict]:
    """The audit's checks (as JSON objects) for one running *instance*."""
    host = host_facts()
    with HostMarks(lifetime=PROBE_TIMEOUT + 30) as marks:
        outcome = instance.exec(["/bin/sh", "-c", PROBE, "vmvc-audit", marks.token,
                                 str(marks.port), host["root_mount"]], PROBE_TIMEOUT)
        reached = marks.reached
    if outcome.exit_code not in (0, None):
        raise VmvcError(f"{what}: the audit probe exited {outcome.exit_code}: "
                        f"{outcome.stderr.strip()[-200:]}")
    try:
        checks = judge(parse_probe(outcome.stdout), host, reached)
    except ValueError as exc:
        raise VmvcError(f"{what}: {exc}: {outcome.output.strip()[-200:]}") from exc
    return [check.as_json() for check in checks]


class Isolation(Metric):
    name = "isolation"
    unit, pyperf_unit, better = "checks", "integer", "higher"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [(WORKLOAD, [b.name for b in plan.backends])]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        return run.boot_seconds + 3 if backend.expensive else 3.0

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return DEFINITION

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        clock = RunClock()
        with uninterruptible(), backend.start() as instance:
            checks = audit(instance, task.name)
        clock.stop()
        passed = sum(check["isolates"] for check in checks)
        if not passed:  # pyperf records only positive values
            raise VmvcError(f"{task.name}: no check of {len(checks)} isolates (pyperf cannot "
                            "record a zero); the answers: " + "; ".join(
                                f"{c['short']}: {c['answer']}" for c in checks))
        meta = {**metadata[task.name], "vmvc_audit": json.dumps(checks)}
        return [pyperf.Benchmark([clock.run([float(passed)], meta)])]


ISOLATION = Isolation()
