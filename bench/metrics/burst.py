"""``burst:x<N>:<backend>`` and ``burst:x<N>.each:<backend>``: N instances asked for at the
same moment: the time until all of them are up, and each one's own start time (N values
per burst, a distribution). Startup under concurrency is what users of container and
microVM platforms ask about most: one instance's start says little about a scale-out.

Each instance is started by a process of its own (a fresh interpreter: a fork of the
harness would inherit a libvirt connection whose event thread it lacks), made ready first
(imported, backend made), then blocked on one pipe until the harness releases them all;
"up" is the backend's ``start()`` returning (a container created and started, a VM booted
to its guest agent). Instances that could exhaust the host's memory are not started
(density's rule): the burst fails with why.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pyperf

from bench.backends.base import Backend, BackendContext, uninterruptible
from bench.errors import VmvcError
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
from bench.metrics.density import step_refused
from image.external import DIE_WITH_VMVC
from results import RunClock

EACH = "each"  # the figure of each instance's own start time, in the workload part
TIMEOUT = 600.0  # for a whole burst to come up (16 VMs under TCG on two cores)
ALL_DEFINITION = ("{n} instances requested at the same moment (one process each, released "
                  "together) → the last one's start() returned; {how}")
EACH_DEFINITION = ("{n} instances requested at the same moment → each one's start() "
                   "returned (N values per burst); {how}")


def workload(n: int, figure: str | None = None) -> str:
    return f"x{n}" + (f".{figure}" if figure else "")


class Burst(Metric):
    name = "burst"

    def groups(self, plan: PlanInputs) -> list[Group]:
        return [(workload(n), [b.name for b in plan.backends]) for n in plan.suite.burst_sizes]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        n = _size(task)
        one = run.boot_seconds * max(1.0, n / (os.cpu_count() or 1)) if backend.expensive \
            else 0.05 * n
        return run.suite.bursts * (one + 1.0)

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        template = EACH_DEFINITION if task.workload.endswith(f".{EACH}") else ALL_DEFINITION
        how = f"a {backend.kind} instance of {backend.name}, idle"
        return template.format(n=_size(task), how=how)

    def benchmarks(self, task: Task, backend: Backend, run: RunContext) -> dict[str, dict]:
        each = Task(self.name, workload(_size(task), EACH), backend.name, task.round)
        return {task.name: self.metadata(task, backend, run),
                each.name: self.metadata(each, backend, run)}

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        n = _size(task)
        refused = step_refused(n, backend.memory_bound_bytes(), measure.host_available_bytes())
        if refused:
            raise VmvcError(f"burst: {refused}")
        assert run.backend_context is not None
        each_name = f"{self.name}:{workload(n, EACH)}:{backend.name}"
        all_runs, each_runs = [], []
        for _ in range(run.suite.bursts):
            clock = RunClock()
            times = burst(backend.name, run.backend_context, n)
            all_runs.append(clock.stop().run([max(times)], metadata[task.name], share=0.5))
            each_runs.append(clock.run(times, metadata[each_name], share=0.5))
            time.sleep(run.suite.settle_seconds)  # the last burst's teardown settles
        return [pyperf.Benchmark(all_runs), pyperf.Benchmark(each_runs)]


def _size(task: Task) -> int:
    return int(task.workload.split(".")[0][1:])


def burst(backend_name: str, context: BackendContext, n: int) -> list[float]:
    """Start *n* instances at once, one starter process each; each one's seconds from the
    release to its ``start()`` returning. Every instance is stopped before this returns."""
    release_r, release_w = os.pipe()
    report_r, report_w = os.pipe()
    stop_r, stop_w = os.pipe()
    kept = (release_r, report_w, stop_r)
    argv = [*DIE_WITH_VMVC, sys.executable, "-m", "bench.metrics.burst_starter", backend_name,
            json.dumps(context.as_json()), *map(str, kept)]
    starters: list[subprocess.Popen] = []
    with uninterruptible():  # a signal waits until every instance is stopped
        try:
            try:
                for _ in range(n):
                    starters.append(subprocess.Popen(argv, pass_fds=kept,
                                                     stdin=subprocess.DEVNULL,
                                                     start_new_session=True))
            finally:  # the starters hold their ends now: EOF on report_r if they all die
                for fd in kept:
                    os.close(fd)
            reports = _Reports(report_r, n)
            reports.wait_for("waiting", time.monotonic() + 120)  # imported, backend made
            start = time.monotonic()
            os.write(release_w, b"g" * n)
            times = [up - start for up in reports.wait_for("up", start + TIMEOUT)]
        finally:
            _stop(starters, stop_w)
            for fd in (release_w, report_r, stop_w):
                os.close(fd)
    return times


class _Reports:
    """Lines from the starters: ``waiting``, ``up <monotonic seconds>`` or
    ``error <reason>``."""

    def __init__(self, fd: int, n: int) -> None:
        self.fd, self.n, self.buffer = fd, n, b""

    def wait_for(self, kind: str, deadline: float) -> list[float]:
        found: list[float] = []
        while len(found) < self.n:
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise VmvcError(f"burst: {self.n - len(found)} of {self.n} instances "
                                    f"not {kind} in time")
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    raise VmvcError(f"burst: {self.n - len(found)} of {self.n} starters "
                                    "exited without a word")
                self.buffer += chunk
            line, self.buffer = self.buffer.split(b"\n", 1)
            got, _, rest = line.decode(errors="replace").partition(" ")
            if got == "error":
                raise VmvcError(f"burst: an instance could not start: {rest}")
            found.append(float(rest) if rest else 0.0)
        return found


def _stop(starters: list[subprocess.Popen], stop_w: int) -> None:
    """Tell every starter to stop its instance, then wait for each; a starter that does not
    exit within a minute is killed (its instance is then vmvc cleanup's)."""
    os.write(stop_w, b"s" * len(starters))
    failed = 0
    for starter in starters:
        try:
            failed += starter.wait(timeout=60) != 0
        except subprocess.TimeoutExpired:
            starter.kill()
            starter.wait()
            failed += 1
    if failed:
        raise VmvcError(f"burst: {failed} of {len(starters)} instances were not stopped "
                        "cleanly (vmvc cleanup removes what is left)")


BURST = Burst()

