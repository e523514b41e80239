"""``gvisor``: gVisor's runsc, a kernel in user space (the sentry) between the image's
processes and the host's, driven as an OCI runtime the way containerd drives it (create,
start, exec, delete: oci_cli.py), on the same overlayfs root and config as runc.

runsc is built by ``make setup`` from Debian's 2022-12 source (scripts/build_gvisor.sh) and
installed at :data:`RUNSC`. That version has two platforms, ptrace and KVM (systrap came
later): KVM where the run's accelerator is kvm and runsc's KVM platform runs a container,
else ptrace; the startup definition says which.

What runsc makes of the shared config (runtime.spec's template, oci_bundle.py):
- cgroups: v1, hybrid and v2 hosts work as they are; runsc makes ``cgroupsPath`` in every
  hierarchy and puts the sandbox (the sentry and its ptrace stubs) and the gofer (the
  sentry's file server) in it. So the container's memory cgroup holds the whole sandbox,
  and an instance's figures (the cgroup's usage, the PSS of its processes) are the sandbox's.
- seccomp: the config's profile is not applied (runsc applies it inside the sandbox only
  with ``--oci-seccomp``, which containerd's and Docker's setups leave off); the sentry and
  the gofer confine themselves with seccomp filters of their own: gVisor's model.
- network: ``--network=none``, loopback only, in the sentry's own network stack. Not on the
  suite's bridge (``bridge = False``): with ``--network=sandbox`` runsc 2022-12 takes the
  container's network namespace for the host's own when /proc/sys/net/core/rmem_default
  exists in it (its test for "root namespace"), and kernels as recent as ours (6.18) have
  that file in every network namespace: ``runsc start`` refuses with "cannot run with network
  enabled in root network namespace".
"""

from __future__ import annotations

import contextlib
import os

from bench.backends.base import IDLE, Instance
from bench.backends.oci_cli import OciCliBackend
from bench.backends.runsc_sandboxes import adopting, remove_sandboxes
from bench.errors import VmvcError

RUNSC = "/usr/local/lib/vmvc/runsc"  # where scripts/build_gvisor.sh installs it


class GvisorBackend(OciCliBackend):
    name = "gvisor"
    memory_cgroup = ("the container's own, made by runsc: the sandbox (sentry and ptrace "
                     "stubs) and the gofer are all in it")
    bridge = False  # runsc 2022-12 refuses every network namespace on this kernel: see above
    # under ptrace a system call costs ~25 µs: the quick suite's syscall workload alone would
    # take 3 of its 10 minutes; its workloads run in the full suite
    quick_metrics = ("startup", "memory", "isolation")

    def __init__(self, context) -> None:
        super().__init__(context)
        self._platform = "ptrace"
        self._platform = self._choose_platform()

    @property
    def startup_definition(self) -> str:  # type: ignore[override]
        return (f"the harness mounts the overlayfs root → `runsc --platform={self._platform} "
                "create` (sandbox and gofer started) → `runsc start` → the sandbox's exit, "
                "which follows the container's, seen through a pidfd; delete untimed")

    def _choose_platform(self) -> str:
        """kvm where the run uses KVM and runsc's KVM platform runs a container, else
        ptrace. Decided when the backend is made, so that no timed start pays for the probe
        (a real one: /dev/kvm can be there and unusable, as on our machines)."""
        if self.context.accelerator != "kvm" or self.binary() is None:
            return "ptrace"
        self._platform = "kvm"
        try:
            self.time_to_exit(["true"])
        except (OSError, VmvcError):
            return "ptrace"
        return "kvm"

    def binary(self) -> str | None:
        return RUNSC if os.access(RUNSC, os.X_OK) else None

    def command(self) -> list[str]:
        return [*super().command(), f"--platform={self._platform}", "--network=none"]

    def unavailable(self) -> str | None:
        if self.binary() is None:
            return f"runsc is not built ({RUNSC}; make setup builds it)"
        return super().unavailable()

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        if network != "none":
            raise VmvcError(f"{self.name}: network {network!r}: only none (runsc 2022-12 "
                            "refuses the network namespaces of this kernel)")
        return super().start(argv, network, cpus)

    def cli(self, *args: str, stdio: tuple[int, int, int] | None = None) -> None:
        try:
            with adopting() if args[0] == "create" else contextlib.nullcontext():
                super().cli(*args, stdio=stdio)
        finally:
            if args[0] == "delete":  # what a create that failed half-way leaves
                remove_sandboxes(args[-1])
