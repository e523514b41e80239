"""``lxc``: a system container through libvirt's LXC driver (vmdriver.lxc): the image's
files as its root, the command as its init (PID 1), libvirt_lxc as its controller, the same
libvirt API the VMs use. A container sharing the host's kernel, made by a VM manager.

Each instance's root is an overlayfs over the image's unpacked layers (shared with runc,
crun and the built-in runtime) with an upper dir of its own, as for runc; it is mounted in
libvirtd's mount namespace, where libvirt_lxc looks for it, and removed at stop.
Commands run in a running instance from a child of the harness that joins the domain's
cgroups and the init's namespaces (libvirt's lxcOpenNamespace, then setns): no ``virsh
lxc-enter-namespace`` process, whose own start and libvirt connection would be timed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.backends.base import (
    ENV,
    IDLE,
    Backend,
    Captured,
    ExecOutcome,
    Instance,
    MemoryReading,
    read_first_line,
    read_memory_of,
    uninterruptible,
    wait_exit,
)
from bench.backends.oci_bundle import cpu_list, image_layers
from bench.errors import VmvcError
from paths import RUNTIME_DATA
from runtime import network
from runtime.cgroups import is_unified
from runtime.linux import CLONE_NEWNS, MNT_DETACH, Linux
from vmdriver.errors import VmError
from vmdriver.vm import owner_alive

ROOTS = "lxc"  # under the work dir: one dir per instance (upper, work, rootfs, owner.lock)
TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24


def in_mount_namespace(pid: int, action: Callable[[Linux], None]) -> None:
    """Run *action* in the mount namespace of *pid* (a forked child: setns into a mount
    namespace needs a single thread, and the harness has libvirt's event thread)."""
    if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
        action(Linux())
        return
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (a child; its failure comes back through the pipe)
        code = 0
        try:
            Linux().setns(os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY), CLONE_NEWNS)
            action(Linux())
        except BaseException as exc:
            os.write(write_fd, str(exc).encode()[:400])
            code = 1
        os._exit(code)
    os.close(write_fd)
    try:
        message = os.read(read_fd, 400).decode(errors="replace")
    finally:
        os.close(read_fd)
        os.waitpid(child, 0)
    if message:
        raise VmvcError(f"lxc: in libvirtd's mount namespace: {message}")


def mounted_in(pid: int, path: Path) -> bool:
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in text.splitlines())


def _own_lock(path: Path) -> int:
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


class OverlayRoot:
    """One instance's dir (0700, locked by its owner) and its overlay root, mounted where
    libvirt_lxc will look for it."""

    def __init__(self, backend: LxcBackend, name: str) -> None:
        self.dir = backend.context.private_workdir() / ROOTS / name
        self.dir.mkdir(parents=True)
        self.lock_fd = _own_lock(self.dir / "owner.lock")
        self.rootfs = self.dir / "rootfs"
        self.daemon = 0

    def mount(self, layers: list[Path], daemon: int) -> None:
        for name in ("upper", "work", "rootfs"):
            (self.dir / name).mkdir()
        options = (f"lowerdir={':'.join(str(p) for p in layers)},"
                   f"upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}")
        in_mount_namespace(daemon, lambda linux: linux.mount("overlay", str(self.rootfs),
                                                             "overlay", 0, options))
        self.daemon = daemon

    def remove(self) -> None:
        if self.daemon:
            daemon, self.daemon = self.daemon, 0
            with contextlib.suppress(OSError):  # a restarted libvirtd took its mounts along
                in_mount_namespace(daemon, lambda linux: linux.umount2(str(self.rootfs),
                                                                       MNT_DETACH))
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def cgroup_procs_files(pid: int) -> list[str]:
    """The cgroup.procs file of each hierarchy *pid* is in below the root (the domain's)."""
    files = []
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if path.strip("/") == "":
                continue
            hierarchy = controllers.removeprefix("name=") if controllers else \
                ("" if is_unified() else "unified")
            procs = os.path.join("/sys/fs/cgroup", hierarchy, path.strip("/"), "cgroup.procs")
            if os.path.exists(procs):
                files.append(procs)
    return files


def own_namespaces() -> set[int]:
    return {os.stat(f"/proc/self/ns/{kind}").st_ino for kind in os.listdir("/proc/self/ns")}


def resolve_init(command: str, layers: list[Path]) -> str:
    """The init's absolute path (libvirt_lxc takes no PATH lookup): *command* found along
    the suite's PATH in the image's layers, upper first."""
    if "/" in command:
        return command
    path = dict(item.split("=", 1) for item in ENV)["PATH"]
    for directory in path.split(":"):
        for layer in reversed(layers):
            if os.path.lexists(layer / directory.lstrip("/") / command):
                return f"{directory}/{command}"
    raise VmvcError(f"lxc: {command}: not found in the image (PATH {path})")


def init_of(controller: int) -> int:
    """The container's init: libvirt_lxc's one child."""
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    if not children:
        raise VmvcError(f"lxc: libvirt_lxc {controller} has no init")
    return int(children[0])


def bounding_set(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise VmvcError(f"lxc: process {pid}: no CapBnd")


def _enter_and_exec(namespaces: list[int], cgroups: list[str], bounding: int,
                    argv: list[str], stdio: tuple[int, int, int], errors: int) -> None:
    """In the forked child: the domain's cgroups, the init's namespaces, then a grandchild
    (setns into a PID namespace applies to children only) that runs *argv*; exit with
    its status."""
    linux = Linux()
    try:
        # nothing of the harness's (a libvirt socket among them) may be open once the
        # process is in the container, where its root could reach /proc/PID/fd
        _close_all_but({*namespaces, *stdio, errors})
        for procs in cgroups:
            with open(procs, "w") as handle:
                handle.write("0")
        for fd in namespaces:  # not the host's own (the user namespace): EINVAL
            if os.fstat(fd).st_ino not in own_namespaces():
                linux.setns(fd, 0)
        os.chdir("/")
    except BaseException as exc:
        os.write(errors, f"entering the container: {exc}".encode()[:400])
        os._exit(255)
    grandchild = os.fork()
    if grandchild == 0:
        _exec(linux, bounding, argv, stdio)
    _, status = os.waitpid(grandchild, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _close_all_but(keep: set[int]) -> None:
    low = 0
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _exec(linux: Linux, bounding: int, argv: list[str], stdio: tuple[int, int, int]) -> None:
    """The command, as the init runs: its capability bounding set, nothing of the
    harness's open files (a libvirt socket among them), killed with its parent."""
    try:
        linux.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for cap in range(64):
            if not bounding >> cap & 1 and linux.capbset_read(cap):
                linux.prctl(PR_CAPBSET_DROP, cap)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        env = dict(item.split("=", 1) for item in ENV)
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"{argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    except BaseException:
        os._exit(126)


class LxcInstance(Instance):
    def __init__(self, backend: LxcBackend, name: str, root: OverlayRoot, dom) -> None:
        self.backend = backend
        self.name = name
        self.root = root
        self.dom = dom
        self.stopped = False

    def controller(self) -> int:
        from vmdriver.lxc import controller_pid

        try:
            return controller_pid(self.dom)
        except VmError as exc:
            raise VmvcError(str(exc)) from exc

    def exec(self, argv: list[str], timeout: float) -> ExecOutcome:
        from vmdriver.lxc import open_namespaces

        what = f"lxc: {' '.join(argv)}"
        controller = self.controller()
        init = init_of(controller)
        with Captured() as captured:
            start = time.monotonic()
            try:
                namespaces = open_namespaces(self.dom)
            except VmError as exc:
                raise VmvcError(str(exc)) from exc
            try:
                code = self._run(namespaces, controller, init, argv, captured, start + timeout,
                                 what)
            finally:
                for fd in namespaces:
                    os.close(fd)
            return captured.outcome(code, time.monotonic() - start)

    def _run(self, namespaces: list[int], controller: int, init: int, argv: list[str],
             captured: Captured, deadline: float, what: str) -> int | None:
        null = os.open(os.devnull, os.O_RDONLY)
        read_fd, write_fd = os.pipe()
        try:
            stdio = (null, captured.out.fileno(), captured.err.fileno())
            child = os.fork()
            if child == 0:  # pragma: no cover (it execs or exits)
                os.close(read_fd)
                _enter_and_exec(namespaces, cgroup_procs_files(controller),
                                bounding_set(init), argv, stdio, write_fd)
            os.close(write_fd)
            write_fd = -1
            try:
                code = wait_exit(child, deadline, what)
            except BaseException:
                os.kill(child, signal.SIGKILL)  # its command goes with it (PDEATHSIG)
                os.waitpid(child, 0)
                raise
            os.set_blocking(read_fd, False)
            with contextlib.suppress(BlockingIOError):
                message = os.read(read_fd, 400).decode(errors="replace")
                if message:
                    raise VmvcError(f"lxc {self.name}: {message}")
            return code
        finally:
            for fd in (null, read_fd, write_fd):
                if fd >= 0:
                    os.close(fd)

    def memory(self) -> MemoryReading:
        return read_memory_of(self.controller(), f"lxc container {self.name}")

    def stop(self) -> None:
        with uninterruptible():
            if self.stopped:
                return
            self.stopped = True
            self.backend.remove(self.name, self.dom, self.root, self.address)


class LxcBackend(Backend):
    name = "lxc"
    kind = "container"  # a system container: its own init, the host's kernel
    bridge = True  # a veth pair libvirt makes on vmvc0, eth0's address set by libvirt_lxc
    quick_metrics = ("startup", "memory", "isolation")  # each start ~0.3 s; full: all
    memory_cgroup = ("the domain's own, made by libvirt (machine/lxc-<pid>-<name>."
                     "libvirt-lxc): the init, what runs in it, and libvirt_lxc, the "
                     "controller libvirt keeps per container (it sits in the same cgroup)")
    startup_definition = ("the harness mounts the overlayfs root in libvirtd's mount "
                          "namespace → libvirt createXML (it returns once libvirt_lxc started "
                          "the init) → libvirt lifecycle event STOPPED (the init exited and "
                          "libvirt tore the container down); unmount untimed. libvirt does not "
                          "report the init's exit status: a failing command is not seen as one")
    ready_definition = ("overlay mount → createXML → the first line read from the "
                        "container's console (a libvirt console stream)")

    def __init__(self, context) -> None:
        super().__init__(context)
        self._conn = None
        self._layers: list[Path] | None = None

    def unavailable(self) -> str | None:
        try:
            import libvirt_lxc  # noqa: F401 (libvirt-python's LXC module)

            from vmdriver.lxc import URI, daemon_pid, leftover_domains

            daemon_pid()
            leftover_domains(URI)
        except ImportError as exc:
            return f"libvirt-python: {exc}"
        except VmError as exc:
            return (f"{exc} (libvirt's LXC driver: libvirt-daemon-driver-lxc, loaded by "
                    "libvirtd at its start; make setup installs it and restarts libvirtd)")
        return None

    def connection(self):
        from vmdriver.lxc import LxcConnection

        if self._conn is None:
            try:
                self._conn = LxcConnection()
            except VmError as exc:
                raise VmvcError(str(exc)) from exc
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def layers(self) -> list[Path]:
        if self._layers is None:
            self._layers = image_layers(self.context.oci_layout, Path(RUNTIME_DATA, "layers"))
        return self._layers

    def spec(self, name: str, root: OverlayRoot, argv: list[str], cpus: set[int] | None,
             nic=None):
        from vmdriver.lxc import LxcSpec

        limit = self.context.limits.memory_mib
        host_mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
        init = resolve_init(argv[0], self.layers())
        return LxcSpec(name=name, root=root.rootfs, argv=[init, *argv[1:]],
                       memory_mib=limit if limit is not None else host_mib,
                       cpus=self.context.limits.cpus, cpuset=cpu_list(cpus) if cpus else "",
                       nic=nic)

    def prepare(self) -> tuple[str, OverlayRoot]:
        """A new instance's name and its root, mounted."""
        from vmdriver.lxc import NAME_PREFIX, daemon_pid

        name = f"{NAME_PREFIX}{uuid.uuid4().hex[:10]}"
        root = OverlayRoot(self, name)
        try:
            root.mount(self.layers(), daemon_pid())
        except BaseException as exc:
            root.remove()
            if isinstance(exc, VmError | OSError):
                raise VmvcError(f"lxc: {exc}") from exc
            raise
        return name, root

    def create(self, spec):
        try:
            return self.connection().create(spec)
        except VmError as exc:
            raise VmvcError(str(exc)) from exc

    def remove(self, name: str, dom, root: OverlayRoot, address: str | None = None) -> None:
        """The domain (if still there), its log, its root, its address: each even if one
        before failed."""
        from vmdriver.lxc import remove_log

        errors: list[Exception] = []
        if dom is not None:
            try:
                self.connection().stop(dom, TIMEOUT)
            except VmError as exc:
                errors.append(exc)
        remove_log(name)
        if self._conn is not None:
            self._conn.forget(name)
        root.remove()
        if address is not None:
            network.release_address(address)
        if errors:
            raise VmvcError(f"lxc: removing {name}: {errors[0]}")

    def start(self, argv: list[str] = IDLE, network: str = "none",
              cpus: set[int] | None = None) -> Instance:
        if network not in ("none", "bridge"):
            raise VmvcError(f"lxc: network {network!r}: choose none or bridge")
        with uninterruptible():  # a root mounted, an address leased: given back on failure
            name, root = self.prepare()
            address, dom = None, None
            try:
                nic = self.nic(name, root) if network == "bridge" else None
                address = nic.address if nic else None
                dom = self.create(self.spec(name, root, argv, cpus, nic))
                self.wait_running(dom)
            except BaseException:
                self.remove(name, dom, root, address)
                raise
        instance = LxcInstance(self, name, root, dom)
        instance.address = address
        return instance

    def wait_running(self, dom) -> None:
        """Until the init runs the command: libvirtd knows its pid, and it has left
        libvirt_lxc's code for the command's (execve), in bounded time."""
        from vmdriver.lxc import controller_pid

        deadline = time.monotonic() + TIMEOUT
        try:
            self.connection().wait_init(dom, TIMEOUT)
            controller = controller_pid(dom)
        except VmError as exc:
            raise VmvcError(str(exc)) from exc
        init = init_of(controller)
        controller_exe = os.readlink(f"/proc/{controller}/exe")
        while os.readlink(f"/proc/{init}/exe") == controller_exe:
            if time.monotonic() > deadline:
                raise VmvcError(f"lxc {dom.name()}: its init did not start the command")
            time.sleep(0.001)

    def nic(self, name: str, root: OverlayRoot):
        from vmdriver.lxc import LxcNic

        # held while the instance's dir exists: a killed run's lease is pruned by cleanup
        address = network.lease_address(f"lxc container {name}", str(root.dir))
        return LxcNic(network.BRIDGE, address, network.SUBNET.prefixlen,
                      f"vmvcl{name.rsplit('-', 1)[1]}"[:15])

    def time_to_exit(self, argv: list[str]) -> float:
        dom = None
        start = time.monotonic()
        name, root = self.prepare()
        try:
            dom = self.create(self.spec(name, root, argv, None))
            self.connection().wait_stopped(name, TIMEOUT, _controller(dom))
            seconds = time.monotonic() - start
        except VmError as exc:
            raise VmvcError(str(exc)) from exc
        finally:
            with uninterruptible():
                self.remove(name, dom, root)
        return seconds

    def time_to_ready(self, argv: list[str]) -> float:
        from vmdriver.lxc import close_console

        dom, stream = None, None
        read_fd, write_fd = os.pipe()
        sink = [write_fd]
        start = time.monotonic()
        name, root = self.prepare()
        try:
            dom = self.create(self.spec(name, root, argv, None))
            stream = self.connection().open_console(dom, sink)
            read_first_line(read_fd, start + TIMEOUT, f"lxc container {name}")
            return time.monotonic() - start
        except VmError as exc:
            raise VmvcError(str(exc)) from exc
        finally:
            if stream is not None:
                close_console(stream)
            if sink[0] >= 0:
                os.close(sink[0])
            os.close(read_fd)
            with uninterruptible():
                self.remove(name, dom, root)


def _controller(dom) -> int:
    """The domain's libvirt_lxc pid (its ID), 0 once it is gone."""
    import libvirt

    try:
        return dom.ID()
    except libvirt.libvirtError:
        return 0


def cleanup(workdir: Path) -> list[str]:
    """What a killed run left: the domains of instances whose owner is gone (auto-destroy
    took them with its connection, unless libvirtd missed it), their overlay roots in
    libvirtd's mount namespace, their dirs and libvirt_lxc logs. Without libvirtd, the
    mounts went with it and the dirs are still removed."""
    from vmdriver.lxc import daemon_pid, destroy_by_name, leftover_domains, remove_log

    removed: list[str] = []
    roots = workdir / ROOTS
    if not roots.is_dir():
        return removed
    try:
        daemon, domains = daemon_pid(), set(leftover_domains())
    except VmError:
        daemon, domains = 0, set()
    for directory in sorted(roots.iterdir()):
        if owner_alive(directory):
            continue
        if directory.name in domains:
            with contextlib.suppress(VmError):
                destroy_by_name(directory.name)
                removed.append(f"lxc domain {directory.name}")
        rootfs = directory / "rootfs"
        for pid in {daemon, os.getpid()} - {0}:
            if mounted_in(pid, rootfs):
                with contextlib.suppress(OSError, VmvcError):
                    in_mount_namespace(pid, lambda linux, r=rootfs: linux.umount2(
                        str(r), MNT_DETACH))
                    removed.append(f"lxc overlay {rootfs}")
        remove_log(directory.name)
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"lxc instance dir {directory}")
    return removed


__all__ = ["LxcBackend", "cleanup"]
