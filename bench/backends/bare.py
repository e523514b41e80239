"""``bare``: the baseline, a plain host process running the image's own binaries.

Each command runs chrooted into the image's unpacked layer (the same bits as every other
backend) in a private mount namespace that binds the layer read-only over itself, the
host's /proc, /dev and /sys in, and the instance's scratch dirs over /tmp and /var/tmp (on
the host file system; the working directory is /tmp), so the image is never written.
The layer is every container's overlay lower dir: a root workload that remounted it
read-write would change the image under all of them. So the instance then enters a user
namespace of its own (root mapped to root, one id): the kernel locks the binds made by the
more privileged namespace (read-only stays read-only, nothing can be unmounted), and the
workload's capabilities hold only in that namespace (no mounting the host's disk anew).
What this costs the baseline: ~0.2 ms of its start (one more unshare, three writes to
/proc/self), nothing of what its workloads measure (the same CPU, memory, host network and
file systems). It stays the host: the host's /dev is there, raw disk included.
No seccomp, no other namespace: the host's network (iperf3 over the host's loopback), PIDs
and scheduler; files of ids other than root show as nobody. A service's instance (started
with network="bridge") is the exception: a network namespace with only its loopback, which
the client joins: the host's path, kept private. An instance made by ``start()``
is accounted in a memory cgroup of its own (``vmvc-bare-<id>``, no limit, no other
controller: accounting, not isolation), so its idle memory is read as a container's is: its
first process joins it before its exec. Commands run in it do not: moving a task between
v1 cgroups waits for an RCU grace period (1-10 ms here), which would land in every timed
command of the baseline (``sleep 0.2`` read 209-212 ms); they are found by the instance's
mark instead. Startup's short-lived instances get none: the baseline's startup stays
fork, chroot, exec.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from bench.backends import netns
from bench.backends.base import (
    ENV,
    IDLE,
    Backend,
    Captured,
    ExecOutcome,
    Instance,
    MemoryReading,
    check_exit,
    read_first_line,
    read_memory,
    uninterruptible,
    wait_process,
)
from bench.backends.netns import BridgedNetns
from bench.backends.oci_bundle import cpu_list, image_layers
from bench.errors import VmvcError
from paths import RUNTIME_DATA
from runtime.cgroups import DEFAULT_PREFIX, MemoryAccount
from runtime.errors import ContainerError
from runtime.linux import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUSER,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    Linux,
)

MARK = "VMVC_BARE_INSTANCE"  # in every process's environment: how stop() finds daemons
CGROUP_PREFIX = f"{DEFAULT_PREFIX}bare-"  # an instance's memory cgroup: DEFAULT_PREFIX + its id


def _own_user_namespace(pid: int) -> int:
    """An fd of *pid*'s user namespace if it is not ours (never the host's: every process
    would match), else -1; -1 too if it is gone already (`true`: nothing to find)."""
    try:
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    if os.fstat(fd).st_ino == os.stat("/proc/self/ns/user").st_ino:
        os.close(fd)
        return -1
    return fd


def in_user_namespace(inode: int) -> list[int]:
    """Live processes in the user namespace of nsfs inode *inode*."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "user").st_ino == inode:
                    found.append(int(entry.name))
    return found


def marked_pids(instance_id: str | None = None) -> list[int]:
    """Live processes carrying the bare mark (of one instance, or of any)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                for item in (entry / "environ").read_bytes().split(b"\0"):
                    if item.startswith(f"{MARK}=".encode()) and (
                            instance_id is None or item == f"{MARK}={instance_id}".encode()):
                        found.append(int(entry.name))
                        break
    return found


def _enter_image(root: str, scratch: str, account: MemoryAccount | None,
                 network: str | None = None, cpus: set[int] | None = None) -> None:
    """In the forked child before exec: into the instance's memory cgroup (before anything
    is charged), its network namespace and CPUs if it has them, private mounts, host dirs
    bound in, chroot."""
    if account is not None:
        account.add(os.getpid())
    linux = Linux()
    if cpus:
        os.sched_setaffinity(0, cpus)
    if network is not None:  # while still the host's root: setns needs its CAP_SYS_ADMIN
        fd = os.open(network, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
    linux.unshare(CLONE_NEWNS)
    linux.mount(None, "/", None, MS_REC | MS_PRIVATE)
    # the layer is shared (the containers' overlay lower dir): bound read-only over itself
    linux.mount(root, root, None, MS_BIND)
    linux.mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    for source, target in (("/proc", "proc"), ("/dev", "dev"), ("/sys", "sys"),
                           (f"{scratch}/tmp", "tmp"), (f"{scratch}/var-tmp", "var/tmp")):
        linux.mount(source, f"{root}/{target}", None, MS_BIND | MS_REC)
    linux.mount(None, f"{root}/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _lock_mounts(linux)
    os.chroot(root)
    os.chdir("/tmp")  # the root is read-only here: tools that write to their cwd need this


def _lock_mounts(linux: Linux) -> None:
    """A user namespace (root as root) owning a copy of the mount namespace: the mounts
    above now come from a more privileged namespace, so the kernel locks them (the layer's
    read-only bind cannot be made writable or unmounted, even by the workload's root)."""
    linux.unshare(CLONE_NEWUSER | CLONE_NEWNS)
    linux.write_file("/proc/self/uid_map", "0 0 1")
    linux.write_file("/proc/self/setgroups", "deny")  # the kernel's price of a gid_map
    linux.write_file("/proc/self/gid_map", "0 0 1")


class BareInstance(Instance):
    def __init__(self, backend: BareBackend, accounted: bool = False,
                 cpus: set[int] | None = None) -> None:
        self.backend = backend
        self.id = f"bare-{uuid.uuid4().hex[:10]}"
        self.cpus = cpus  # the only CPUs its processes run on (None: any)
        self.netns: BridgedNetns | None = None  # its own network namespace, if it has one
        self.network: str | None = None  # the network namespace it runs in (None: the host's)
        self.scratch = backend.context.private_workdir() / self.id
        for sub in ("tmp", "var-tmp"):
            (self.scratch / sub).mkdir(parents=True)
            os.chmod(self.scratch / sub, 0o1777)
        self.main: subprocess.Popen | None = None
        self.userns = -1  # an fd of the instance's own user namespace: held, so its inode
        # stays this instance's until stop() (a freed namespace's inode may be reused)
        self.account: MemoryAccount | None = None
        if accounted:
            account = MemoryAccount(f"{DEFAULT_PREFIX}{self.id}")
            try:
                account.create()
            except (OSError, ContainerError) as exc:
                shutil.rmtree(self.scratch, ignore_errors=True)
                raise VmvcError(f"bare: a memory cgroup for {self.id}: {exc}") from exc
            self.account = account

    def env(self) -> dict[str, str]:
        """The image's environment, marked with this instance's id (how its processes are
        found again)."""
        return {**dict(item.split("=", 1) for item in ENV), MARK: self.id}

    def popen(self, argv: list[str], stdout: int, stderr: int) -> subprocess.Popen:
        root, scratch, account = str(self.backend.root()), str(self.scratch), self.account
        network, cpus = self.network, self.cpus
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                env=self.env(), close_fds=True,
                                preexec_fn=lambda: _enter_image(root, scratch, account,
                                                                network, cpus))

    def hold_namespace(self) -> None:
        """Hold the running first process's user namespace (once; never in a timed path:
        start() after its Popen, pids() at stop)."""
        if self.userns < 0 and self.main is not None and self.main.poll() is None:
            self.userns = _own_user_namespace(self.main.pid)

    def join(self, argv: list[str], stdout: int, stderr: int) -> subprocess.Popen:
        """*argv* in the running instance's mount namespace and root, through util-linux's
        nsenter (as `docker exec` joins a container): spawned without a fork of this Python
        process (vfork + exec; a fork costs ~3 ms here and grows with the process) and
        without a mount namespace to build and tear down, so a timed command's wall time is
        the command's, give or take ~2 ms."""
        assert self.main is not None
        # --root and --wd without a value: the running process's own root and cwd, i.e. the
        # read-only bind of the layer as its namespace sees it (a path named here would be
        # opened before entering the namespace: the writable layer underneath); --user: the
        # instance's user namespace, so the command's root has no more power than the
        # instance's (host root could mount the host's disk there anew, writable);
        # --preserve-credentials: setgroups is denied there, and root stays root; --net: the
        # instance's network namespace when it has its own; taskset: its CPUs when pinned
        nsenter = [shutil.which("nsenter") or "nsenter", f"--target={self.main.pid}", "--user",
                   "--mount", *(["--net"] if self.network else []), "--preserve-credentials",
                   "--root", "--wd", "--"]
        pin = [shutil.which("taskset") or "taskset", "--cpu-list", cpu_list(self.cpus)] \
            if self.cpus else []
        return subprocess.Popen([*pin, *nsenter, *argv], stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, env=self.env(), close_fds=True)

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        running = self.main is not None and self.main.poll() is None
        spawn = self.join if running else self.popen
        with Captured() as captured:
            start = time.monotonic()
            proc = spawn(argv, captured.out.fileno(), captured.err.fileno())
            code = wait_process(proc, timeout, f"bare: {' '.join(argv)}")
            return captured.outcome(code, time.monotonic() - start)

    def pids(self) -> list[int]:
        """Every live process of this instance, daemons included: by its environment mark, by
        its memory cgroup, by its user namespace (the instance's own: a daemon may clear or
        overwrite its environment, as nginx and redis-server's process titles do), and its
        first process by its pid (while a process is in execve its environment reads empty:
        `ready`'s shell exec'ing sleep, which a stop that saw no mark left running)."""
        found = set(marked_pids(self.id))
        if self.account is not None:
            found |= set(self.account.pids())
        if self.main is not None and self.main.poll() is None:
            found.add(self.main.pid)
        self.hold_namespace()
        if self.userns >= 0:
            found |= set(in_user_namespace(os.fstat(self.userns).st_ino))
        return sorted(found)

    def memory(self) -> MemoryReading:
        if self.account is None:
            raise VmvcError(f"bare: {self.id} is not accounted in a memory cgroup")
        return read_memory(self.account.dir)

    def stop(self) -> None:
        with uninterruptible():
            self._stop()

    def _stop(self) -> None:
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if self.main is not None:
                self.main.wait()
            time.sleep(0.01)
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.netns is not None:  # its processes, the last users, are gone
            made, self.netns = self.netns, None
            netns.remove(made)
        if self.userns >= 0:
            os.close(self.userns)
            self.userns = -1
        if self.account is not None:
            try:
                self.account.delete()
            except ContainerError as exc:
                raise VmvcError(f"bare: {exc}") from exc
            self.account = None


class BareBackend(Backend):
    memory_cgroup = ("a cgroup of its own, memory controller only, no limit (accounting, not "
                     "isolation); every process of the instance joins it before its exec")
    bridge = True  # the host itself: host <-> bare is the host's loopback, the baseline
    name = "bare"
    kind = "host"
    startup_definition = ("fork → private mount ns, then a user ns of its own locking it, "
                          "chroot into the image's layer → exec; waitpid returns the exit of "
                          "`true`")
    ready_definition = "fork → chroot → exec → the first line read from its stdout"

    def __init__(self, context) -> None:
        super().__init__(context)
        self._root: Path | None = None

    def memory_bound_bytes(self) -> int | None:
        return None  # a host process: the suite's memory limit is not applied to it

    def root(self) -> Path:
        if self._root is None:
            layers = image_layers(self.context.oci_layout, Path(RUNTIME_DATA, "layers"))
            if len(layers) != 1:
                raise VmvcError(f"bare: the image has {len(layers)} layers; the bare backend "
                                "runs single-layer images (vmvc's own)")
            self._root = layers[0]
        return self._root

    def own_network(self, instance_id: str) -> BridgedNetns:
        """A service instance's network: a namespace with only its loopback, which the host
        side joins (the host's own loopback path, kept private: a host service on the same
        port is neither in the way nor measured, and nothing the workload starts listens on
        the host's ports)."""
        return netns.make(instance_id, bridged=False)

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        if network not in ("none", "bridge"):
            raise VmvcError(f"{self.name}: network {network!r}: choose none or bridge")
        instance = BareInstance(self, accounted=True, cpus=cpus)
        try:
            if network == "bridge":
                with uninterruptible():  # a namespace made is one its stop() removes
                    instance.netns = self.own_network(instance.id)
                instance.network = instance.netns.path
                instance.address = instance.netns.address or "127.0.0.1"
                instance.client_network = None if instance.netns.address else instance.network
            instance.main = instance.popen(argv, subprocess.DEVNULL, subprocess.DEVNULL)
            instance.hold_namespace()  # Popen returned once the child exec'd: it is made
        except BaseException:
            instance.stop()
            raise
        return instance

    def host_side(self, reach: Instance, cpus: set[int] | None = None) -> Instance:
        """An idle instance for a service's client: in the host's network, or in the one
        *reach*'s host side must join (its ``client_network``)."""
        instance = BareInstance(self, accounted=True, cpus=cpus)
        instance.network = reach.client_network
        try:
            instance.main = instance.popen(IDLE, subprocess.DEVNULL, subprocess.DEVNULL)
            instance.hold_namespace()
        except BaseException:
            instance.stop()
            raise
        return instance

    def time_to_exit(self, argv: list[str]) -> float:
        with BareInstance(self) as instance:
            start = time.monotonic()
            proc = instance.popen(argv, subprocess.DEVNULL, subprocess.DEVNULL)
            code = wait_process(proc, 60, f"bare: {' '.join(argv)}")
            seconds = time.monotonic() - start
        check_exit("bare", argv, code)
        return seconds

    def time_to_ready(self, argv: list[str]) -> float:
        with BareInstance(self) as instance:
            read_fd, write_fd = os.pipe()
            try:
                start = time.monotonic()
                instance.main = instance.popen(argv, write_fd, write_fd)
                os.close(write_fd)
                write_fd = -1
                read_first_line(read_fd, start + 60, "bare")
                return time.monotonic() - start
            finally:
                os.close(read_fd)
                if write_fd >= 0:
                    os.close(write_fd)
