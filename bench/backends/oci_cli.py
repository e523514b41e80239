"""Container backends driven through an OCI runtime's command line, the way containerd
drives runc: ``create --bundle --pid-file``, ``start``, wait for the init's exit, ``delete``;
``exec`` for commands in a running instance.

For runc and crun the harness mounts each container's overlayfs root itself (lower dirs:
the image's unpacked layers, shared with the built-in runtime) as Docker's snapshotter
does; the built-in runtime's CLI gets the image through its ``org.vmvc.image.layout``
annotation and mounts its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.backends import netns
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
    run_command,
    uninterruptible,
    wait_exit,
)
from bench.backends.netns import BridgedNetns
from bench.backends.oci_bundle import container_config, image_layers, new_id
from bench.errors import VmvcError
from paths import BENCH_STATE_DIR, RUNTIME_DATA
from runtime.container import IMAGE_ANNOTATION, NETWORK_ANNOTATION
from runtime.linux import MNT_DETACH, Linux

BUNDLES = "bundles"
CLI_TIMEOUT = 60.0


class Bundle:
    """One container's bundle dir: config.json, and for runc/crun its overlay root."""

    def __init__(self, backend: OciCliBackend, argv: list[str], network: str = "none",
                 cpus: set[int] | None = None) -> None:
        self.backend = backend
        self.id = new_id()
        self.dir = backend.context.private_workdir() / BUNDLES / self.id
        self.dir.mkdir(parents=True)
        self.netns: BridgedNetns | None = None
        try:
            self._write_config(argv, network, cpus)
        except BaseException:  # a namespace, a veth, a lease or the dir: none is left
            if self.netns is not None:
                netns.remove(self.netns)
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.mounted = False
        self.created = False
        self.pid = 0

    def _write_config(self, argv: list[str], network: str, cpus: set[int] | None) -> None:
        backend = self.backend
        annotations = {} if backend.mounts_rootfs else \
            {IMAGE_ANNOTATION: str(backend.context.oci_layout)}
        if network != "none" and not backend.harness_network:
            annotations[NETWORK_ANNOTATION] = network
        config = container_config(argv, self.id, backend.context.limits, annotations, cpus)
        if network != "none" and backend.harness_network:  # joined by path, as CNI does
            self.netns = netns.make(self.id)
            for namespace in config["linux"]["namespaces"]:
                if namespace["type"] == "network":
                    namespace["path"] = self.netns.path
        (self.dir / "config.json").write_text(json.dumps(config))

    def mount_root(self) -> None:
        if not self.backend.mounts_rootfs:
            return
        for name in ("upper", "work", "rootfs"):
            (self.dir / name).mkdir()
        lower = ":".join(str(p) for p in self.backend.layers())
        Linux().mount("overlay", str(self.dir / "rootfs"), "overlay", 0,
                      f"lowerdir={lower},upperdir={self.dir / 'upper'},"
                      f"workdir={self.dir / 'work'}")
        self.mounted = True

    def create(self, stdio: tuple[int, int, int]) -> int:
        self.mount_root()
        pid_file = self.dir / "init.pid"
        try:
            self.backend.cli("create", "--bundle", str(self.dir), "--pid-file", str(pid_file),
                             self.id, stdio=stdio)
        except BaseException:
            with contextlib.suppress(VmvcError):  # whatever a half-done create left
                self.backend.cli("delete", "--force", self.id)
            raise
        self.created = True
        self.pid = int(pid_file.read_text())
        return self.pid

    def remove(self) -> None:
        with uninterruptible():
            self._remove()

    def _remove(self) -> None:
        """delete -f, unmount, remove the dir: each step even if one before failed."""
        errors = []
        if self.created:
            self.created = False
            try:
                self.backend.cli("delete", "--force", self.id)
            except VmvcError as exc:
                errors.append(exc)
        if self.mounted:
            self.mounted = False
            try:
                Linux().umount2(str(self.dir / "rootfs"), MNT_DETACH)
            except OSError as exc:
                errors.append(exc)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.netns is not None:  # once the container (its last user) is gone
            made, self.netns = self.netns, None
            try:
                netns.remove(made)
            except (OSError, VmvcError) as exc:
                errors.append(exc)
        if errors:
            raise VmvcError(f"{self.backend.name}: removing {self.id}: {errors[0]}")


class CliInstance(Instance):
    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        backend = self.bundle.backend
        with Captured() as captured:
            start = time.monotonic()
            code = run_command([*backend.command(), "exec", self.bundle.id, *argv],
                               (subprocess.DEVNULL, captured.out, captured.err), timeout,
                               f"{backend.name}: {' '.join(argv)}")
            return captured.outcome(code, time.monotonic() - start)

    def memory(self) -> MemoryReading:
        backend = self.bundle.backend
        return read_memory_of(self.bundle.pid, f"{backend.name} container {self.bundle.id}")

    def stop(self) -> None:
        self.bundle.remove()


class OciCliBackend(Backend):
    memory_cgroup = ("the container's own; the runtime CLI has exited, no monitor process "
                     "stays behind")
    kind = "container"
    mounts_rootfs = True  # False: the runtime mounts the image itself
    bridge = True  # on vmvc0 through a network namespace the harness makes (netns.py)
    harness_network = True  # False: the runtime puts its containers on vmvc0 itself

    @property
    def startup_definition(self) -> str:  # type: ignore[override]
        mount = "the harness mounts the overlayfs root → " if self.mounts_rootfs else ""
        return (f"{mount}`{self.name} create` → `{self.name} start` → the init's exit seen "
                "through a pidfd; delete untimed")

    @property
    def ready_definition(self) -> str:  # type: ignore[override]
        mount = "overlay mount → " if self.mounts_rootfs else ""
        return f"{mount}create → start → the first line read from the container's stdout"

    def __init__(self, context) -> None:
        super().__init__(context)
        self._layers: list[Path] | None = None

    def binary(self) -> str | None:
        return shutil.which(self.name)

    def command(self) -> list[str]:
        return [self.binary() or self.name, "--root", str(BENCH_STATE_DIR / self.name)]

    def layers(self) -> list[Path]:
        if self._layers is None:
            self._layers = image_layers(self.context.oci_layout, Path(RUNTIME_DATA, "layers"))
        return self._layers

    def unavailable(self) -> str | None:
        binary = self.binary()
        if binary is None:
            return f"{self.name} is not installed"
        try:
            version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                     timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{binary} --version: {exc}"
        if version.returncode != 0:
            return f"{binary} --version exited {version.returncode}"
        return None

    def cli(self, *args: str, stdio: tuple[int, int, int] | None = None) -> None:
        """One runtime command; its error output becomes the error's one line."""
        with tempfile.TemporaryFile() as err:
            stdin, stdout, stderr = stdio if stdio else (subprocess.DEVNULL, subprocess.DEVNULL,
                                                         err)
            code = run_command([*self.command(), *args], (stdin, stdout, stderr), CLI_TIMEOUT,
                               f"{self.name} {args[0]}")
            if code != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                raise VmvcError(f"{self.name} {args[0]} exited {code}"
                                + (f": {lines[-1][:200]}" if lines else ""))

    def address_of(self, bundle: Bundle) -> str | None:
        """Where the host reaches the container on the suite's bridge."""
        return bundle.netns.address if bundle.netns else None

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        if network not in ("none", "bridge"):
            raise VmvcError(f"{self.name}: network {network!r}: choose none or bridge")
        with uninterruptible():  # a namespace made is a namespace removed
            bundle = Bundle(self, argv, network, cpus)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            bundle.create((null, null, null))
            self.cli("start", bundle.id)
        except BaseException:
            bundle.remove()
            raise
        finally:
            os.close(null)
        instance = CliInstance(bundle)
        instance.address = self.address_of(bundle) if network != "none" else None
        return instance

    def time_to_exit(self, argv: list[str]) -> float:
        bundle = Bundle(self, argv)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            start = time.monotonic()
            pid = bundle.create((null, null, null))
            self.cli("start", bundle.id)
            code = wait_exit(pid, start + CLI_TIMEOUT, f"{self.name} container {bundle.id}")
            seconds = time.monotonic() - start
        finally:
            os.close(null)
            bundle.remove()
        check_exit(self.name, argv, code)
        return seconds

    def time_to_ready(self, argv: list[str]) -> float:
        bundle = Bundle(self, argv)
        read_fd, write_fd = os.pipe()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            start = time.monotonic()
            bundle.create((null, write_fd, write_fd))
            os.close(write_fd)
            write_fd = -1
            self.cli("start", bundle.id)
            read_first_line(read_fd, start + CLI_TIMEOUT, f"{self.name} container {bundle.id}")
            return time.monotonic() - start
        finally:
            for fd in (read_fd, write_fd, null):
                if fd >= 0:
                    os.close(fd)
            bundle.remove()
