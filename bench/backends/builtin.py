"""``builtin``: the suite's own runtime through its library API (runtime.container), in the
harness's process: no runtime CLI is started per container."""

from __future__ import annotations

import os
import threading
import time

from bench.backends.base import (
    IDLE,
    Backend,
    Captured,
    ExecOutcome,
    Instance,
    MemoryReading,
    check_exit,
    read_first_line,
    read_memory_of,
    uninterruptible,
    wait_exit,
)
from bench.backends.oci_bundle import container_config, new_id
from paths import RUNTIME_DATA, RUNTIME_ROOT
from runtime.container import Runtime


class BuiltinInstance(Instance):
    def __init__(self, backend: BuiltinBackend, container_id: str, pid: int) -> None:
        self.backend, self.id, self.pid = backend, container_id, pid
        self.stopped = False

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        runtime = self.backend.runtime
        # past the timeout every process of the container goes (the instance with them)
        timer = threading.Timer(timeout, lambda: runtime.kill(self.id, 9, every_process=True))
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            with Captured() as captured:
                timer.start()
                start = time.monotonic()
                code = runtime.exec(self.id, argv,
                                    stdio=(null, captured.out.fileno(), captured.err.fileno()))
                return captured.outcome(code, time.monotonic() - start)
        finally:
            timer.cancel()
            os.close(null)

    def memory(self) -> MemoryReading:
        return read_memory_of(self.pid, f"builtin container {self.id}")

    def stop(self) -> None:
        with uninterruptible():
            if not self.stopped:
                self.stopped = True
                self.backend.runtime.delete(self.id, force=True)


class BuiltinBackend(Backend):
    memory_cgroup = "the container's own; no runtime process stays behind"
    bridge = True
    name = "builtin"
    kind = "container"
    startup_definition = ("Runtime.create (overlayfs root, cgroups, namespaces, seccomp) → "
                          "start → waitpid returns the exit of `true`; delete untimed")
    ready_definition = "Runtime.create → start → the first line read from the container's stdout"

    def __init__(self, context) -> None:
        super().__init__(context)
        self.runtime = Runtime(RUNTIME_ROOT, RUNTIME_DATA)

    def _create(self, argv: list[str], stdio: tuple[int, int, int], network: str = "none",
                cpus: set[int] | None = None) -> tuple[str, int, str | None]:
        container_id = new_id()
        config = container_config(argv, container_id, self.context.limits, cpus=cpus)
        state = self.runtime.create(container_id, self.context.workdir, config,
                                    image=self.context.oci_layout, stdio=stdio, network=network)
        return container_id, state.pid, state.network.get("address")

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        null = os.open(os.devnull, os.O_RDWR)
        try:
            container_id, pid, address = self._create(argv, (null, null, null), network, cpus)
        finally:
            os.close(null)
        instance = BuiltinInstance(self, container_id, pid)
        instance.address = address
        try:
            self.runtime.start(container_id)
        except BaseException:
            instance.stop()
            raise
        return instance

    def time_to_exit(self, argv: list[str]) -> float:
        null = os.open(os.devnull, os.O_RDWR)
        container_id = None
        try:
            start = time.monotonic()
            container_id, pid, _ = self._create(argv, (null, null, null))
            self.runtime.start(container_id)
            code = wait_exit(pid, start + 60, f"builtin container {container_id}")
            seconds = time.monotonic() - start
        finally:
            os.close(null)
            if container_id is not None:
                with uninterruptible():
                    self.runtime.delete(container_id, force=True)
        check_exit("builtin", argv, code)
        return seconds

    def time_to_ready(self, argv: list[str]) -> float:
        read_fd, write_fd = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        container_id = None
        try:
            start = time.monotonic()
            container_id, _, _ = self._create(argv, (null, write_fd, write_fd))
            os.close(write_fd)
            write_fd = -1
            self.runtime.start(container_id)
            read_first_line(read_fd, start + 60, f"builtin container {container_id}")
            return time.monotonic() - start
        finally:
            for fd in (read_fd, write_fd, null):
                if fd >= 0:
                    os.close(fd)
            if container_id is not None:
                with uninterruptible():
                    self.runtime.delete(container_id, force=True)

