"""Container engines driven the way their users drive them (``docker run``, ``podman
run``, ``exec``, ``rm``): the whole engine is measured, daemon, shim or conmon, and the OCI
runtime under it (runc under Docker, crun under podman: each engine's default here).

The image is the suite's own: its one layer imported into the engine's store once
(``import``), tagged by the image's digest, so every engine runs the same files as every
other backend. It stays in the engine's store, as a pulled image would; ``vmvc cleanup``
removes the suite's containers, never the image.

An instance's memory: the container's own memory cgroup as for every container, and in the
PSS figure the engine's per-container monitor too (containerd-shim-runc-v2 for Docker,
conmon for podman: the init's parent, outside the container's cgroup); the daemons' fixed
cost (dockerd, containerd) is shared by all containers and is not counted per instance.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
import uuid
from pathlib import Path

from bench.backends.base import (
    IDLE,
    Backend,
    Captured,
    ExecOutcome,
    Instance,
    MemoryReading,
    pss_bytes,
    read_first_line,
    read_memory_of,
    run_command,
    uninterruptible,
    wait_process,
)
from bench.backends.oci_bundle import cpu_list
from bench.errors import VmvcError

CLI_TIMEOUT = 120.0
IMPORT_TIMEOUT = 600.0
NAME_PREFIX = "vmvc-bench-"  # every container the harness makes: `vmvc cleanup` finds them
IMAGE_REPOSITORY = "localhost/vmvc-image"


def new_name() -> str:
    return f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"


class EngineInstance(Instance):
    def __init__(self, backend: EngineBackend, name: str, pid: int) -> None:
        self.backend = backend
        self.name = name
        self.pid = pid
        self.removed = False

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        with Captured() as captured:
            start = time.monotonic()
            code = run_command([*self.backend.command(), "exec", self.name, *argv],
                               (subprocess.DEVNULL, captured.out, captured.err), timeout,
                               f"{self.backend.name}: {' '.join(argv)}")
            return captured.outcome(code, time.monotonic() - start)

    def memory(self) -> MemoryReading:
        what = f"{self.backend.name} container {self.name}"
        reading = read_memory_of(self.pid, what)
        monitor = parent_of(self.pid)
        try:
            monitor_pss = pss_bytes(monitor) if monitor else 0
        except (OSError, VmvcError):
            monitor_pss = 0
        if not monitor_pss:
            return reading
        return MemoryReading(reading.cgroup, reading.pss + monitor_pss,
                             {**reading.parts, str(monitor): monitor_pss})

    def stop(self) -> None:
        if self.removed:
            return
        self.removed = True
        with uninterruptible():
            self.backend.remove(self.name)


def parent_of(pid: int) -> int:
    """The parent's pid (the engine's shim or conmon for a container's init), 0 if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(text.rsplit(")", 1)[1].split()[1])


class EngineBackend(Backend):
    kind = "container"
    quick_metrics = ("startup", "memory", "engine", "isolation")  # each start is 0.2-0.4 s
    binary = ""

    @property
    def memory_cgroup(self) -> str:  # type: ignore[override]
        return (f"the container's own, made by {self.name} (the PSS figure adds the "
                f"{self.monitor} process that {self.name} keeps per container, outside it)")

    @property
    def startup_definition(self) -> str:  # type: ignore[override]
        return (f"`{self.name} run --network none IMAGE CMD` → the CLI's exit, which follows "
                "the container's exit; its removal untimed")

    @property
    def ready_definition(self) -> str:  # type: ignore[override]
        return f"`{self.name} run` → the first line read from the CLI's stdout"

    def __init__(self, context) -> None:
        super().__init__(context)
        self._image: str | None = None

    def command(self) -> list[str]:
        return [self.binary]

    def run_flags(self) -> list[str]:
        """Flags every ``run`` gets (podman adds the ulimits this host allows)."""
        return []

    def rm_command(self, name: str) -> list[str]:
        """Remove *name* at once, running or not (SIGKILL: a shell as PID 1 ignores SIGTERM,
        and a grace time would be waited out)."""
        return [*self.command(), "rm", "--force", name]

    def unavailable(self) -> str | None:
        if not os.path.exists(self.binary):
            return f"{self.binary} is not installed (make setup installs it)"
        try:
            info = subprocess.run([*self.command(), "info", "--format", "{{.Host.Arch}}"
                                   if self.name == "podman" else "{{.ServerVersion}}"],
                                  capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{self.name} info: {exc}"
        if info.returncode != 0:
            lines = info.stderr.strip().splitlines()
            return f"{self.name} info exited {info.returncode}" + \
                (f": {lines[-1][:160]}" if lines else "")
        return None

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        """One engine command; its stdout, or its last error line as the error."""
        proc = subprocess.run([*self.command(), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout, check=False)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines()
            raise VmvcError(f"{self.name} {args[0]} exited {proc.returncode}"
                            + (f": {lines[-1][:200]}" if lines else ""))
        return proc.stdout

    def image(self) -> str:
        """The suite's image in the engine's store (imported the first time)."""
        if self._image is not None:
            return self._image
        from runtime.oci_image import read_manifest

        manifest = read_manifest(self.context.oci_layout)
        if len(manifest.layers) != 1:
            raise VmvcError(f"{self.name}: the image has {len(manifest.layers)} layers; "
                            "import takes one")
        tag = f"{IMAGE_REPOSITORY}:{manifest.digest.split(':', 1)[1][:16]}"
        found = subprocess.run([*self.command(), "image", "inspect", tag],
                               capture_output=True, timeout=CLI_TIMEOUT, check=False)
        if found.returncode != 0:
            digest = manifest.layers[0]["digest"].split(":", 1)[1]
            layer = self.context.oci_layout / "blobs" / "sha256" / digest
            self.cli("import", str(layer), tag, timeout=IMPORT_TIMEOUT)
        self._image = tag
        return tag

    def limit_flags(self, cpus: set[int] | None) -> list[str]:
        limits = self.context.limits
        flags = []
        if limits.cpus is not None:
            flags += ["--cpus", f"{limits.cpus:g}"]
        if limits.memory_mib is not None:
            flags += ["--memory", f"{limits.memory_mib}m"]
        if cpus:
            flags += ["--cpuset-cpus", cpu_list(cpus)]
        return flags

    def network_flags(self, network: str, name: str) -> tuple[list[str], str | None]:
        """Flags for *network*, and the address the host reaches the instance at."""
        if network != "none":
            raise VmvcError(f"{self.name}: network {network!r}: only none here")
        return ["--network", "none"], None

    def release_network(self, name: str) -> None:
        """What :meth:`network_flags` made for the instance *name*, removed."""

    def remove(self, name: str) -> None:
        try:
            proc = subprocess.run(self.rm_command(name), capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT, check=False)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines()
                raise VmvcError(f"{self.name} rm {name} exited {proc.returncode}"
                                + (f": {lines[-1][:200]}" if lines else ""))
        finally:
            self.release_network(name)

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        image = self.image()
        name = new_name()
        with uninterruptible():
            flags, address = self.network_flags(network, name)
            try:
                self.cli("run", "--detach", "--name", name, *flags, *self.run_flags(),
                         *self.limit_flags(cpus), image, *argv)
                pid = int(self.cli("inspect", "--format", "{{.State.Pid}}", name).strip())
                if pid <= 0:
                    raise VmvcError(f"{self.name} container {name} is not running")
            except BaseException:
                subprocess.run(self.rm_command(name), capture_output=True,
                               timeout=CLI_TIMEOUT, check=False)
                self.release_network(name)
                raise
        instance = EngineInstance(self, name, pid)
        instance.address = address
        return instance

    def time_to_exit(self, argv: list[str]) -> float:
        image = self.image()
        name = new_name()
        try:
            start = time.monotonic()
            code = run_command([*self.command(), "run", "--name", name, "--network", "none",
                                *self.run_flags(), *self.limit_flags(None), image, *argv],
                               (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL),
                               CLI_TIMEOUT, f"{self.name} run")
            seconds = time.monotonic() - start
        finally:
            with uninterruptible():
                subprocess.run(self.rm_command(name), capture_output=True,
                               timeout=CLI_TIMEOUT, check=False)
        if code != 0:
            raise VmvcError(f"{self.name}: {' '.join(argv)} exited {code}")
        return seconds

    def time_to_ready(self, argv: list[str]) -> float:
        image = self.image()
        name = new_name()
        read_fd, write_fd = os.pipe()
        proc = None
        try:
            start = time.monotonic()
            proc = subprocess.Popen([*self.command(), "run", "--name", name, "--network",
                                     "none", *self.run_flags(), *self.limit_flags(None), image,
                                     *argv], stdin=subprocess.DEVNULL, stdout=write_fd,
                                    stderr=subprocess.DEVNULL)
            os.close(write_fd)
            write_fd = -1
            read_first_line(read_fd, start + CLI_TIMEOUT, f"{self.name} container {name}")
            return time.monotonic() - start
        finally:
            for fd in (read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)
            with uninterruptible():
                subprocess.run(self.rm_command(name), capture_output=True,
                               timeout=CLI_TIMEOUT, check=False)
                if proc is not None:
                    wait_process(proc, CLI_TIMEOUT, f"{self.name} run")


NPROC = 32768  # what podman may set on our machines (its default, and even the hard limit
# the harness reads, is refused there: "setrlimit RLIMIT_NPROC: Operation not permitted")


def ulimit_flags() -> list[str]:
    """podman raises RLIMIT_NOFILE to 1048576 and RLIMIT_NPROC unless told, which a host
    without CAP_SYS_RESOURCE (a sandbox, a CI runner's container) refuses: this host's own
    hard limits instead."""
    _, nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    _, nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    nproc = NPROC if nproc == resource.RLIM_INFINITY else min(nproc, NPROC)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
