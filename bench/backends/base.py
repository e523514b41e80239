"""The one interface every backend implements: start an instance of the image, run a
command in it, read its host memory cost, stop it; and the two startup measurements.

A backend says *how* to get a process running the image's binaries (a host process, a
container by some runtime, a VM); the harness says *what* to measure. Every reading carries
its own definition, recorded with the result.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from bench.errors import VmvcError
from runtime.cgroups import memory_dir_of, memory_usage_bytes, procs
from runtime.storage import private_dir

IDLE = ["sleep", "1000000"]
READY = ["/bin/sh", "-c", "echo ready; exec sleep 1000000"]
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to container instances (None: unlimited, like bare)."""

    cpus: float | None = None  # CFS quota as a fraction of one CPU per period
    memory_mib: int | None = None


@dataclass(frozen=True)
class BackendContext:
    """What every backend needs: the image, where to keep its state, the limits."""

    oci_layout: Path
    disk: Path
    kernel: Path
    initramfs: Path
    workdir: Path  # this run's scratch space (bundles, overlays, bare scratch dirs)
    limits: Limits = field(default_factory=Limits)
    vm_memory_mib: int = 512
    vm_vcpus: int = 1
    accelerator: str = "auto"  # kvm or tcg: the run's host checks decided; auto: vmdriver probes

    PATHS = ("oci_layout", "disk", "kernel", "initramfs", "workdir")

    def as_json(self) -> dict:
        """For a process of the harness's (a pyperf worker, a burst starter)."""
        return {**{k: str(getattr(self, k)) for k in self.PATHS},
                "limits": asdict(self.limits), "vm_memory_mib": self.vm_memory_mib,
                "vm_vcpus": self.vm_vcpus, "accelerator": self.accelerator}

    @classmethod
    def from_json(cls, fields: dict) -> BackendContext:
        return cls(**{k: Path(fields[k]) for k in cls.PATHS}, limits=Limits(**fields["limits"]),
                   vm_memory_mib=fields["vm_memory_mib"], vm_vcpus=fields["vm_vcpus"],
                   accelerator=fields["accelerator"])

    def private_workdir(self) -> Path:
        """The work dir, 0700 whatever it was: instances leave setuid files and device
        nodes in their upper and scratch dirs there, and runc/crun's overlay roots are
        mounted there (runtime.storage)."""
        return Path(private_dir(self.workdir))


@dataclass(frozen=True)
class ExecOutcome:
    exit_code: int | None
    stdout: str  # what figures are read from
    stderr: str  # kept apart: a tool's warning must not break its JSON
    seconds: float  # wall time from "run requested" to its exit, on the host's monotonic clock

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Captured:
    """Two temporary files for a command's stdout and stderr (files, not pipes: a daemon
    it leaves behind may keep them open)."""

    def __enter__(self) -> Captured:
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        return self

    def __exit__(self, *_: object) -> None:
        self.out.close()
        self.err.close()

    def outcome(self, code: int | None, seconds: float) -> ExecOutcome:
        texts = []
        for handle in (self.out, self.err):
            handle.seek(0)
            texts.append(handle.read().decode(errors="replace"))
        return ExecOutcome(code, texts[0], texts[1], seconds)


@dataclass(frozen=True)
class MemoryReading:
    """One instance's host memory, read the same two ways for every backend (the memory
    metric defines both): its memory cgroup's usage, and the PSS of every process in it."""

    cgroup: int
    pss: int
    parts: dict[str, int] = field(default_factory=dict)  # each process's PSS, by pid


class Instance(ABC):
    """A running instance of the image, idle until told to run something."""

    address: str | None = None  # on the suite's bridge, when started with network="bridge"
    client_network: str | None = None  # the network namespace a client joins to reach the
    # address (None: the host's own)

    @abstractmethod
    def exec(self, argv: list[str], timeout: float) -> ExecOutcome: ...

    @abstractmethod
    def memory(self) -> MemoryReading: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop and remove it, with everything it made (idempotent)."""

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class Backend(ABC):
    name: str = ""
    kind: str = ""  # host | container | vm
    startup_definition = ""
    ready_definition = ""
    memory_cgroup = ""  # which memory cgroup holds an instance (the memory metric's definitions)
    # What the backend can do; metrics ask these, never the backend's name:
    bridge = False  # can start instances on the suite's bridge, reachable from the host
    ready = True  # can time a running process's first line (startup:ready)
    expensive = False  # an instance is a boot: fixed counts in process, not pyperf's workers
    boot_phases = False  # its instances report boot phases (``instance.phases``)
    phase_events: ClassVar[dict[str, str]] = {}  # with boot_phases: its phases in order, each
    # with its clock and events
    startup_phase = ""  # with boot_phases: the phase that is its startup figure
    needs_full_image = False  # the tiny (busybox) image lacks what it needs
    default = True  # run when --backends is not given (a variant for one question: False)
    # the metrics it runs in the quick suite (None: all of them); a slow backend gives the
    # quick suite its startup, memory and isolation, and the full suite everything
    quick_metrics: tuple[str, ...] | None = None
    daemons: tuple[str, ...] = ()  # an engine's host-wide processes (the engine metric)
    monitor = ""  # the process an engine keeps beside each container (shim, conmon)

    def __init__(self, context: BackendContext) -> None:
        self.context = context

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (None: it can)."""
        return None

    @abstractmethod
    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        """An instance running *argv* (by default idle), returned once it runs; with
        *network* ``bridge`` reachable from the host at its ``address``; on *cpus* only
        (None: any), so a service's client can have a CPU of its own."""

    @abstractmethod
    def time_to_exit(self, argv: list[str]) -> float:
        """Seconds from "start requested" to the observed exit of *argv* in a new instance
        (cleanup afterwards, untimed)."""

    @abstractmethod
    def time_to_ready(self, argv: list[str]) -> float:
        """Seconds from "start requested" to the first output line of a long-running *argv*
        in a new instance (stopped afterwards, untimed)."""

    def memory_bound_bytes(self) -> int | None:
        """The host memory one idle instance may come to take (its memory limit), or None
        when nothing bounds it; density checks it against the host's free memory."""
        limit = self.context.limits.memory_mib
        return None if limit is None else limit << 20

    def close(self) -> None:  # noqa: B027 (most backends keep nothing)
        """Release what the backend keeps between instances."""


def read_first_line(fd: int, deadline: float, what: str, expect: str = "ready") -> None:
    """Block until a whole line arrives on *fd* (a pipe), or fail by the deadline; it must
    be *expect* (an error message is not readiness)."""
    buffer = b""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise VmvcError(f"{what}: no output line within the timeout")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise VmvcError(f"{what}: exited before printing a line")
            buffer += chunk
    line = buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
    if line != expect:
        raise VmvcError(f"{what}: first line {line[:120]!r}, expected {expect!r}")


def wait_exit(pid: int, deadline: float, what: str) -> int | None:
    """Wait for *pid* to exit (child or not, through a pidfd); its status if it is ours."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = -1
    try:
        if pidfd >= 0:
            ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise VmvcError(f"{what}: still running at the timeout")
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            return None
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def wait_process(proc: subprocess.Popen, timeout: float, what: str) -> int:
    """Popen.wait without its timeout's polling (sleeps of up to 50 ms, which would be
    timed): block on a pidfd, kill at the timeout."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    except BaseException:  # interrupted: the command goes too, and is reaped
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(pidfd)
    if not ready:
        proc.kill()
        proc.wait()
        raise VmvcError(f"{what}: still running after {timeout:.0f} s")
    return proc.wait()


def run_command(argv: list[str], stdio: tuple, timeout: float, what: str) -> int:
    """Run *argv* with *stdio* (fds or subprocess constants); its exit status."""
    proc = subprocess.Popen(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
    return wait_process(proc, timeout, what)


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (shared pages split among their users)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise VmvcError(f"process {pid}: no Pss in smaps_rollup")


def read_memory(cgroup_dir: str) -> MemoryReading:
    """The memory cgroup *cgroup_dir*'s usage and the PSS of every process in it (one that
    exits meanwhile counts nothing)."""
    parts = {}
    for pid in procs(cgroup_dir):
        try:
            parts[str(pid)] = pss_bytes(pid)
        except (OSError, VmvcError):  # gone, or exiting (no mappings left)
            continue
    return MemoryReading(memory_usage_bytes(cgroup_dir), sum(parts.values()), parts)


def read_memory_of(pid: int, what: str) -> MemoryReading:
    """:func:`read_memory` of the memory cgroup *pid* is in."""
    try:
        directory = memory_dir_of(pid)
    except OSError as exc:
        raise VmvcError(f"{what}: process {pid}: {exc.strerror}") from exc
    if directory is None:
        raise VmvcError(f"{what}: process {pid} is in no memory cgroup")
    return read_memory(directory)


_depth = 0
_pending: int | None = None
_raise: Callable[[int], None] | None = None


def defer_signals(raise_for: Callable[[int], None]) -> None:
    """Install handlers for SIGINT and SIGTERM that act (*raise_for*) at once outside an
    :func:`uninterruptible` section and at its end inside one. Python-level handlers, not
    a blocked mask: the processes an operation starts keep their signals as they are."""
    global _raise
    _raise = raise_for

    def handler(signum: int, _frame: object) -> None:
        global _pending
        if _depth:
            _pending = signum
        else:
            raise_for(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """An operation that must not stop half-way (an instance made or taken down, one
    measurement): a signal arriving meanwhile takes effect when it ends. Without
    :func:`defer_signals` installed it changes nothing."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None and _raise is not None:
            signum, _pending = _pending, None
            _raise(signum)


def check_exit(backend: str, argv: list[str], code: int | None) -> None:
    """A startup command must succeed (None: not our child, the status is not ours to see)."""
    if code not in (0, None):
        raise VmvcError(f"{backend}: {' '.join(argv)} exited {code}")
