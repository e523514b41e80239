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
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.backends.base import IDLE, Instance
from bench.backends.oci_cli import OciCliBackend
from bench.errors import VmvcError
from paths import BENCH_STATE_DIR
from runtime.cgroups import DEFAULT_PREFIX
from runtime.linux import PR_SET_CHILD_SUBREAPER, Linux

RUNSC = "/usr/local/lib/vmvc/runsc"  # where scripts/build_gvisor.sh installs it
STATE_ROOT = BENCH_STATE_DIR / "gvisor"  # runsc's --root (oci_cli: one per backend)
CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_PROCESSES = (b"runsc-sandbox", b"runsc-gofer")  # their argv[0]
HALF_CREATED_AGE = 60.0  # seconds: a create in progress records its state within a second


class GvisorBackend(OciCliBackend):
    name = "gvisor"
    memory_cgroup = ("the container's own, made by runsc: the sandbox (sentry and ptrace "
                     "stubs) and the gofer are all in it")
    bridge = False  # runsc 2022-12 refuses every network namespace on this kernel: see above

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


@contextlib.contextmanager
def adopting() -> Iterator[None]:
    """The sandbox and gofer that a ``runsc create`` leaves made our children, as they are
    containerd-shim-runsc's (a subreaper), and reaped as soon as they exit. Else they go
    to PID 1, and ``runsc delete`` waits, polling, until PID 1 has reaped the killed
    sandbox: 1.6 s per delete on our machines, whose PID 1 reaps slowly."""
    linux = Linux()
    before = children()
    linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        linux.prctl(PR_SET_CHILD_SUBREAPER, 0)  # only what this create leaves
        for pid in children() - before:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] \
                        in SANDBOX_PROCESSES:  # never a process another thread waits for
                    threading.Thread(target=reap, args=(pid,), daemon=True).start()


def children() -> set[int]:
    """This process's children (every thread's)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


def reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # reaped already (wait_exit may)
        os.waitpid(pid, 0)


def remove_sandboxes(container_id: str = "") -> list[str]:
    """What runsc leaves when its ``create`` is killed or times out (a sandbox that hangs
    while booting): runsc records the container last, so ``delete`` then finds none, and
    its sandbox and gofer live on. Those of our state root whose container id is
    *container_id* (all with ""), killed; their ``vmvc-<id>`` cgroups removed in every
    hierarchy runsc made them in (blkio and name=systemd too); their lock files removed."""
    removed = []
    ids = {container_id} if container_id else set()
    for pid, found in sandbox_processes(container_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"gvisor sandbox process {pid} ({found})")
        ids.add(found)
    for found in sorted(ids):
        cgroups = [*CGROUP_ROOT.glob(f"*/{DEFAULT_PREFIX}{found}"),
                   *CGROUP_ROOT.glob(f"{DEFAULT_PREFIX}{found}")]
        removed += [f"gvisor cgroup {path}: {remove_cgroup(path)}" for path in sorted(cgroups)]
    return removed + remove_lock_files(container_id)


def sandbox_processes(container_id: str = "") -> list[tuple[int, str]]:
    """(pid, container id) of the runsc sandbox and gofer processes of our state root (of
    *container_id* only, unless ""). Found by their command lines: the sandbox may not be
    in its cgroup yet, and no state file may name it."""
    root = f"--root={STATE_ROOT}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] not in SANDBOX_PROCESSES or root not in argv:
            continue
        bundle = bundle_of(argv).rsplit(b"/", 1)[-1].decode()  # the dir is named by the id
        if bundle and (bundle == container_id or not container_id):
            found.append((int(entry.name), bundle))
    return found


def bundle_of(argv: list[bytes]) -> bytes:
    """The --bundle of a runsc command line (the gofer's ``--bundle DIR``, the sandbox's
    ``--bundle=DIR``)."""
    for flag, value in zip(argv, [*argv[1:], b""], strict=True):
        if flag == b"--bundle":
            return value
        if flag.startswith(b"--bundle="):
            return flag.removeprefix(b"--bundle=")
    return b""


def remove_cgroup(path: Path) -> str:
    """rmdir, retried while its killed processes are still exiting (bounded: 2 s)."""
    deadline = time.monotonic() + 2
    while True:
        try:
            path.rmdir()
            return "removed"
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                return f"not removed: {exc.strerror}"
            time.sleep(0.01)


def remove_lock_files(container_id: str = "") -> list[str]:
    """runsc's lock files (``<sandbox>_sandbox:<container>.lock``) that no state file goes
    with: *container_id*'s at once, others once no create in progress can own them."""
    removed = []
    pattern = f"{container_id}_sandbox:*.lock" if container_id else "*_sandbox:*.lock"
    for lock in sorted(STATE_ROOT.glob(pattern)) if STATE_ROOT.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if lock.with_suffix(".state").exists() or (
                    not container_id and time.time() - lock.stat().st_mtime < HALF_CREATED_AGE):
                continue
            lock.unlink()
            removed.append(f"gvisor lock file {lock}")
    return removed
