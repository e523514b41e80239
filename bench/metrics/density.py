"""``density:idle:<backend>``: host memory in use with N idle instances at once, for N = 1, 2,
4 … up to the suite's maximum, and the least-squares slope per instance. Run in the
harness's own process (N instances at once); a step that could exhaust the host's memory is
not started, and why is recorded."""

from __future__ import annotations

import time

import pyperf

from bench.backends.base import Backend, Instance, uninterruptible
from bench.errors import VmvcError
from bench.harness import measure
from bench.harness.plan import Task
from bench.metrics.base import Group, Metric, PlanInputs, RunContext
from results import RunClock, fit_line

DEFINITION = ("host memory in use (MemTotal - MemAvailable) with N idle instances running "
              "(each run's value; the reading just before they started is its "
              "vmvc_before_bytes); slope of the difference per instance by least squares")
HOST_RESERVE_BYTES = 1 << 30  # left free for the host at every step


class Density(Metric):
    name = "density"
    unit, pyperf_unit, better = "bytes", "byte", "lower"

    def groups(self, plan: PlanInputs) -> list[Group]:
        if plan.suite.density_max <= 0:
            return []
        return [("idle", [b.name for b in plan.backends])]

    def estimate(self, task: Task, backend: type[Backend], run: RunContext) -> float:
        one = run.boot_seconds if backend.expensive else 0.2
        return sum(n * one + 2 * run.suite.settle_seconds
                   for n in steps(run.suite.density_max))

    def definition(self, task: Task, backend: Backend, run: RunContext) -> str:
        return DEFINITION

    def run(self, task: Task, backend: Backend, metadata: dict[str, dict],
            run: RunContext) -> list[pyperf.Benchmark]:
        return [density(backend, steps(run.suite.density_max), run.suite.settle_seconds,
                        metadata[task.name])]


def steps(maximum: int) -> list[int]:
    """1, 2, 4, 8, … up to *maximum* (and *maximum* itself)."""
    found, n = [], 1
    while n < maximum:
        found.append(n)
        n *= 2
    return [*found, maximum] if maximum >= 1 else []


def density(backend: Backend, counts: list[int], settle: float,
            metadata: dict) -> pyperf.Benchmark:
    """Host memory in use (MemTotal - MemAvailable) with N idle instances, over a reading
    without them, for each N in *counts*; the least-squares slope per instance."""
    readings: list[tuple[int, int, int]] = []  # N, host used before, host used with N
    clocks: list[RunClock] = []  # each step's run: when it started, how long it took
    capped: dict[str, str] = {}
    for n in counts:
        instances: list[Instance] = []
        with uninterruptible():  # a signal waits for this step's instances to be stopped
            try:
                clock = RunClock()
                time.sleep(settle)
                refused = step_refused(n, backend.memory_bound_bytes(),
                                       measure.host_available_bytes())
                if refused and not readings:
                    raise VmvcError(f"density: {refused}")
                if refused:
                    capped["vmvc_density_capped"] = refused
                    break
                before = measure.host_used_bytes()
                for _ in range(n):
                    instances.append(backend.start())
                time.sleep(settle)
                readings.append((n, before, measure.host_used_bytes()))
                clocks.append(clock.stop())
            finally:
                stop_all(instances)
    # values are the readings with N running (pyperf wants them > 0; the difference can dip
    # below zero when the host reclaims caches meanwhile); the one before is in the metadata
    slope, intercept = fit_line([(n, float(after - before)) for n, before, after in readings])
    fitted = {"vmvc_slope_bytes": slope, "vmvc_intercept_bytes": intercept, **capped}
    return pyperf.Benchmark([clock.run([float(after)], {**metadata, **fitted,
                                                        "vmvc_instances": n,
                                                        "vmvc_before_bytes": before})
                             for clock, (n, before, after) in zip(clocks, readings, strict=True)])


def step_refused(n: int, bound: int | None, available: int) -> str | None:
    """Why N instances that may take *bound* bytes each must not be started with *available*
    bytes free (None: they may). Unbounded instances (idle containers, bare) are not
    refused: their idle cost is measured in KiB."""
    if bound is None or n * bound + HOST_RESERVE_BYTES <= available:
        return None
    return (f"N={n} not run: {n} x {bound / 2**20:.0f} MiB (what one instance may take) "
            f"+ 1 GiB for the host > {available / 2**30:.1f} GiB available")


def stop_all(instances: list[Instance]) -> None:
    """Stop every instance, even when one refuses; then report the first refusal."""
    errors = []
    for instance in instances:
        try:
            instance.stop()
        except BaseException as exc:  # each gets its turn, even on Ctrl-C
            errors.append(exc)
    if errors:
        raise errors[0]


DENSITY = Density()
