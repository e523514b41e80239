"""One measurement of each kind, on any backend: the loops the pyperf workers and the
in-process VM/density code share. Each returns the value pyperf records."""

from __future__ import annotations

import time
from pathlib import Path

from bench.backends.base import Backend, Instance, MemoryReading, uninterruptible
from bench.errors import VmvcError
from bench.workloads import Workload

EXEC_TIMEOUT = 600.0


def startup(backend: Backend, workload: str, argv: list[str], loops: int) -> float:
    """Seconds for *loops* startups (pyperf divides by loops)."""
    measure = backend.time_to_exit if workload == "true" else backend.time_to_ready
    total = 0.0
    for _ in range(loops):
        with uninterruptible():  # a signal stops the loop between startups, not inside one
            total += measure(argv)
    return total


def idle_memory(backend: Backend, settle: float) -> MemoryReading:
    """Host memory one idle instance costs, read after *settle* seconds."""
    with uninterruptible(), backend.start() as instance:
        time.sleep(settle)
        return instance.memory()


def cost(instance: Instance, workload: Workload, suite: str,
         host: Instance | None = None) -> float:
    """Run the workload's setup then its command in *instance* (its host command in
    *host*, against the instance's address); the tool's figure (its first, when several)."""
    return next(iter(figures(instance, workload, suite, host).values()))


def figures(instance: Instance, workload: Workload, suite: str,
            host: Instance | None = None) -> dict[str, float]:
    """As :func:`cost`: every figure of the one run, by name."""
    with uninterruptible():
        return _cost(instance, workload, suite, host)


def _cost(instance: Instance, workload: Workload, suite: str,
          host: Instance | None) -> dict[str, float]:
    if workload.setup:
        setup = instance.exec(workload.argv(suite, workload.setup,  # a server binds it
                                            instance.address or "127.0.0.1"), EXEC_TIMEOUT)
        if setup.exit_code != 0:
            raise VmvcError(f"{workload.name}: setup exited {setup.exit_code}: "
                            f"{_last_line(setup.output)}")
    if workload.host_command:
        if host is None or instance.address is None:
            raise VmvcError(f"{workload.name}: needs an instance on the suite's bridge and a "
                            "host side")
        outcome = host.exec(workload.argv(suite, workload.host_command, instance.address),
                            EXEC_TIMEOUT)
    else:
        outcome = instance.exec(workload.argv(suite), EXEC_TIMEOUT)
    if outcome.exit_code != 0:
        raise VmvcError(f"{workload.name}: exited {outcome.exit_code}: "
                        f"{_last_line(outcome.output)}")
    try:
        values = workload.read(outcome.output, outcome.stdout, outcome.seconds)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise VmvcError(f"{workload.name}: cannot read its figure from the output: "
                        f"{type(exc).__name__}: {exc}") from exc
    for name, value in values.items():
        if not value > 0:
            raise VmvcError(f"{workload.name}: figure {name or 'of the run'} = {value} is "
                            "not positive")
    return values


def host_memory() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    fields = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) * 1024
    return fields


def host_used_bytes() -> int:
    """MemTotal - MemAvailable: what the host could not hand to a new process."""
    fields = host_memory()
    return fields["MemTotal"] - fields["MemAvailable"]


def host_available_bytes() -> int:
    return host_memory()["MemAvailable"]


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:200] if lines else "no output"
