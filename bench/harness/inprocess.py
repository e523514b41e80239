"""The expensive measurements, run in the harness's own process with fixed counts instead
of pyperf's worker processes: VM boots (each boot gives a startup value, one value per
boot phase and an idle memory reading), workloads in a VM, and density (N instances at
once). They still become pyperf runs and benchmarks, with the same metadata."""

from __future__ import annotations

import time

import pyperf

from bench.backends.base import Backend, Instance, uninterruptible
from bench.backends.vm import VmBackend
from bench.errors import VmvcError
from bench.harness import measure
from bench.workloads import Workload
from results import RunClock, fit_line
from vmdriver.vm import PHASE_EVENTS, PHASES


def vm_boots(backend: VmBackend, boots: int, settle: float,
             metadata: dict[str, dict]) -> list[pyperf.Benchmark]:
    """*boots* boots: ``startup:true:vm``, ``boot-phase:<phase>:vm``, ``memory:idle:vm``.

    *metadata* maps each of those names to its benchmark metadata."""
    runs: dict[str, list[pyperf.Run]] = {name: [] for name in metadata}
    for _ in range(boots):
        clock = RunClock()  # each value's run lasts the boot it came from
        with uninterruptible(), backend.boot() as instance:
            phases = instance.phases
            time.sleep(settle)
            memory = instance.memory()
        values = {"startup:true:vm": phases["first_command_done"],
                  "memory:idle:vm": float(memory.bytes),
                  **{f"boot-phase:{p}:vm": phases[p] for p in PHASES}}
        for name in runs:
            value = values.get(name)
            if value:
                runs[name].append(clock.run([value], metadata[name]))
    return [pyperf.Benchmark(r) for r in runs.values() if r]


def phase_definitions() -> dict[str, str]:
    return dict(PHASE_EVENTS)


def vm_cost(backend: VmBackend, workload: Workload, suite: str, values: int, warmups: int,
            metadata: dict) -> pyperf.Benchmark:
    """One VM booted for the workload; warm-ups then values, each a fresh run of it."""
    clock = RunClock()
    with uninterruptible(), backend.boot() as instance:
        warm = [measure.cost(instance, workload, suite) for _ in range(warmups)]
        figures = [measure.cost(instance, workload, suite) for _ in range(values)]
    return pyperf.Benchmark([clock.run(figures, metadata, warm)])


def density(backend: Backend, steps: list[int], settle: float,
            metadata: dict) -> pyperf.Benchmark:
    """Host memory in use (MemTotal - MemAvailable) with N idle instances, over a reading
    without them, for each N; the least-squares slope per instance is the overhead."""
    readings: list[tuple[int, int, int]] = []  # N, host used before, host used with N
    clocks: list[RunClock] = []  # each step's run: when it started, how long it took
    capped: dict[str, str] = {}
    for n in steps:
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


HOST_RESERVE_BYTES = 1 << 30  # left free for the host at every density step


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


