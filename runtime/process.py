"""Starting a container's init: the parent side (fork, namespaces, user maps, cgroup) and
the init's own setup sequence (mounts, pivot_root, hardening) up to the exec.

Process tree: the creator forks A; A joins the cgroup and the namespaces it must join,
unshares the new ones and forks B, which is PID 1 of the new PID namespace and becomes the
workload itself through execve: no monitor process stays behind. A exits at once; B is
reparented to the creator, which is a child subreaper, so the creator can wait for it.
B reports "ready" (or one error line) on a pipe; it then blocks opening the exec fifo until
``start`` reads it, runc's two-phase create.
"""

from __future__ import annotations

import os
import select
import sys
import time

from runtime import mounts
from runtime.capabilities import NUMBER as CAP_NUMBER
from runtime.capabilities import last_cap
from runtime.capabilities import mask as cap_mask
from runtime.config import Spec
from runtime.errors import ContainerError
from runtime.exec_stub import sealed_stub
from runtime.light import suppress
from runtime.linux import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    NAMESPACE_FLAGS,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    Linux,
    namespace_id,
)
from runtime.records import Record
from runtime.trace import mark

TYPE_CHECKING = False  # annotations only: collections.abc costs ~3 ms of every CLI call
if TYPE_CHECKING:
    from collections.abc import Callable

SETUP_TIMEOUT = 60.0
ROOTFS_PROPAGATION = {"private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
                      "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC, "shared": MS_SHARED,
                      "rshared": MS_SHARED | MS_REC, "": MS_SLAVE | MS_REC}


class InitPlan(Record):
    """What B needs, all computed by the creator before the fork."""

    spec: Spec
    rootfs: str  # absolute path of the root to pivot into
    overlay: str | None  # overlay mount data; None: bind-mount *rootfs* onto itself
    fifo: str  # the exec fifo (host path); "" for no two-phase wait
    cgroup_v1_hierarchies: list[str] | None  # None on cgroup v2
    seccomp_bpf: bytes | None
    stdio: tuple[int, int, int] | None = None
    network_setup: Callable[[], None] | None = None  # run in B (inside the new netns)
    on_init_pid: Callable[[int], None] | None = None  # run in the creator once B exists
    extra_env: list[str] = []
    go_fd: int = -1  # creator → A/B messages (user maps written, network plugged)
    late_cgroup: bool = False  # the creator moves B into its cgroup while B sets up
    new_keyring: bool = True  # a session keyring of the container's own (runc's default)
    root_nodev: bool = False  # no device nodes from the root (no cgroup device filter: v2)
    console_fd: int = -1  # process.terminal: the engine's console socket, connected
    create_hooks: Callable[[int], None] | None = None  # the creator runs them, given B's PID
    start_state: dict | None = None  # startContainer hooks: B runs them, with this state
    host_namespaces: dict = {}  # kind → the creator's (dev, ino), for joined namespaces
    # whose sysctls B writes: checked again there, where the write happens
    report: Callable[[str], None] | None = None  # in B: a message to the creator
    received: set = set()  # bytes B has read from go_fd so far


def become_subreaper(linux: Linux) -> None:
    """Orphaned container inits are reparented to this process, so it can wait for them."""
    linux.prctl(PR_SET_CHILD_SUBREAPER, 1)


class _SyncPipe:
    """Line messages from A and B to the creator."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.buffer = b""

    def send(self, message: str) -> None:
        os.write(self.write_fd, message.replace("\n", " ").encode() + b"\n")

    def receive(self, deadline: float) -> str | None:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContainerError("container setup timed out")
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.read_fd, 4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="replace")


def _write_id_maps(pid: int, spec: Spec, linux: Linux) -> None:
    for name, mappings in (("uid_map", spec.uid_mappings), ("gid_map", spec.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
        try:
            linux.write_file(f"/proc/{pid}/{name}", text)
        except OSError as exc:
            raise ContainerError(f"linux.{name.replace('_map', 'Mappings')}: the kernel refused "
                                 f"{text.strip()!r}: {exc.strerror}") from exc


def spawn_init(plan: InitPlan, join_cgroup: Callable[[int], None], linux: Linux) -> int:
    """Start B; return its host PID once it is ready (blocked on the exec fifo).

    Without a user namespace or namespaces to join, the creator forks B itself: it
    unshares the PID namespace for its next child only and restores it at once, saving a
    fork. Otherwise A does the namespace work and forks B.
    """
    spec = plan.spec
    sync = _SyncPipe()
    go_read, go_write = os.pipe()
    new_user = "user" in spec.namespaces and spec.namespaces["user"] is None
    direct = not new_user and all(path is None for path in spec.namespaces.values())
    try:
        pid_a = _fork_direct(plan, join_cgroup, sync, go_read, go_write, linux) if direct \
            else os.fork()
    except BaseException:
        for fd in (sync.read_fd, sync.write_fd, go_read, go_write):
            os.close(fd)
        raise
    if pid_a == 0:
        os.close(sync.read_fd)
        os.close(go_write)
        plan.go_fd = go_read
        _run_intermediate(plan, join_cgroup, sync, go_read, new_user, linux)
    os.close(sync.write_fd)
    os.close(go_read)
    pid_b = None
    direct_pid = pid_a if direct else None
    if direct:
        pid_a = None
    deadline = time.monotonic() + SETUP_TIMEOUT
    ready = hooks_asked = False
    try:
        if direct:
            # Moving a task between cgroups waits for an RCU grace period (~10 ms here):
            # done now, while B mounts its root, instead of before B may start.
            _join_for(direct_pid, join_cgroup, sync, deadline)
            _tell(go_write, b"j")
        while True:
            message = sync.receive(deadline)
            if message is None:
                raise ContainerError("container init exited during setup")
            kind, _, rest = message.partition(" ")
            if kind == "userns":
                _write_id_maps(pid_a, spec, linux)
                _tell(go_write, b"g")
            elif kind == "pid":  # B's namespaces exist now (direct B cannot know its PID)
                pid_b = direct_pid if rest == "-" else int(rest)
                if plan.on_init_pid is not None:
                    plan.on_init_pid(pid_b)
                    _tell(go_write, b"n")
            elif kind == "error":
                raise ContainerError(rest)
            elif kind == "ready":
                ready = True
            elif kind == "hooks":
                hooks_asked = True
            if hooks_asked and pid_b is not None and plan.create_hooks is not None:
                hooks_asked = False
                plan.create_hooks(pid_b)  # B waits before pivot_root meanwhile
                deadline = time.monotonic() + SETUP_TIMEOUT  # hooks have their own timeouts
                _tell(go_write, b"h")
            if ready and pid_b is not None:
                return pid_b
    except BaseException:
        if pid_b is not None or direct_pid is not None:
            _kill_and_reap(pid_b if pid_b is not None else direct_pid)
        raise
    finally:
        os.close(sync.read_fd)
        os.close(go_write)
        if pid_a is not None:
            _reap(pid_a)


def _tell(go_write: int, message: bytes) -> None:
    """A go-ahead to A/B; if it died meanwhile, its error (or EOF) is on the sync pipe."""
    with suppress(BrokenPipeError):
        os.write(go_write, message)


def _join_for(pid: int, join_cgroup: Callable[[int], None], sync: _SyncPipe,
              deadline: float) -> None:
    """Move B into its cgroup; should B have died meanwhile, report B's own error."""
    try:
        join_cgroup(pid)
    except ContainerError:
        message = sync.receive(min(deadline, time.monotonic() + 1)) or ""
        if message.startswith("error "):
            raise ContainerError(message[6:]) from None
        raise


def _await_go(plan: InitPlan, wanted: bytes, what: str) -> None:
    """In B: wait for the creator's go-ahead *wanted* (messages may come in any order)."""
    while wanted not in plan.received:
        got = os.read(plan.go_fd, 1)
        if not got:
            raise ContainerError(f"the creator went away before {what}")
        plan.received = {*plan.received, got}


def _enter_cgroup_namespace(plan: InitPlan, linux: Linux) -> None:
    """Once B is in its cgroup: the cgroup namespace, rooted there (direct path only)."""
    if plan.late_cgroup and b"cgroupns" not in plan.received:
        _await_go(plan, b"j", "joining the cgroup")
        if "cgroup" in plan.spec.namespaces:
            linux.unshare(NAMESPACE_FLAGS["cgroup"])
        plan.received = {*plan.received, b"cgroupns"}


def _fork_direct(plan: InitPlan, join_cgroup: Callable[[int], None], sync: _SyncPipe,
                 go_read: int, go_write: int, linux: Linux) -> int:
    """Fork B straight into a new PID namespace; returns B's host PID in the creator."""
    new_pid = "pid" in plan.spec.namespaces
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if new_pid else -1
    try:
        if new_pid:
            linux.unshare(NAMESPACE_FLAGS["pid"])  # only this thread's next children
        pid = os.fork()
        if pid == 0:
            os.close(sync.read_fd)
            os.close(go_write)  # so that B sees EOF, not silence, should the creator die
            plan.go_fd = go_read
            plan.late_cgroup = True
            try:
                flags = 0
                for kind in plan.spec.namespaces:
                    if kind not in ("pid", "user", "cgroup"):  # cgroup: once joined
                        flags |= NAMESPACE_FLAGS[kind]
                linux.unshare(flags)
                sync.send("pid -")
            except BaseException as exc:
                try:
                    sync.send(f"error {_describe(exc)}")
                finally:
                    os._exit(1)
            run_init(plan, sync, linux)
        return pid
    finally:
        if new_pid:
            linux.setns(own, NAMESPACE_FLAGS["pid"])
            os.close(own)


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)  # SIGKILL
    except ProcessLookupError:
        return
    for _ in range(400):  # B is our child once A has exited (subreaper)
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.005)


def _run_intermediate(plan: InitPlan, join_cgroup: Callable[[int], None], sync: _SyncPipe,
                      go_read: int, new_user: bool, linux: Linux) -> None:
    """A: cgroup, namespaces, fork B, report B's PID, exit. Never returns."""
    try:
        spec = plan.spec
        mark('A forked')
        join_cgroup(os.getpid())
        mark('A joined cgroup')
        for kind, path in spec.namespaces.items():
            if path is not None:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    linux.setns(fd, NAMESPACE_FLAGS[kind])
                finally:
                    os.close(fd)
        if new_user:
            linux.unshare(NAMESPACE_FLAGS["user"])
            sync.send("userns")
            if os.read(go_read, 1) != b"g":
                raise ContainerError("the creator did not write the user namespace maps")
            # become the namespace's root (a mapped id): files can be made from here on
            linux.setgroups([])
            linux.setresgid(0)
            linux.setresuid(0)
        flags = 0
        for kind, path in spec.namespaces.items():
            if path is None and kind != "user":
                flags |= NAMESPACE_FLAGS[kind]
        linux.unshare(flags)
        mark('A unshared')
        pid_b = os.fork()
        if pid_b == 0:
            run_init(plan, sync, linux)
        sync.send(f"pid {pid_b}")
        os._exit(0)
    except BaseException as exc:  # report, never fall back into the creator's code
        try:
            sync.send(f"error {_describe(exc)}")
        finally:
            os._exit(1)


def _describe(exc: BaseException) -> str:
    if os.environ.get("VMVC_RUNTIME_DEBUG"):
        try:
            import traceback

            traceback.print_exception(exc)
        except ImportError:  # in a user namespace the stdlib may be out of reach
            pass
    if isinstance(exc, OSError):
        message = exc.strerror or str(exc)
        return f"{message}: {exc.filename}" if exc.filename else message
    return str(exc) or type(exc).__name__


def run_init(plan: InitPlan, sync: _SyncPipe, linux: Linux) -> None:
    """B: PID 1 of the container. Set up, report ready, wait for start, exec. Never returns."""
    try:
        if plan.stdio is not None:
            for target, fd in enumerate(plan.stdio):
                os.dup2(fd, target)
        mark('B forked')
        plan.report = sync.send
        # A session of its own: the container never gets the operator's terminal as its
        # controlling tty (no /dev/tty, no TIOCSTI into the shell that started it).
        linux.setsid()
        linux.prctl(PR_SET_DUMPABLE, 0)  # until execve: /proc/1/* stays the host's business
        fifo_fd = prepare_container(plan, linux)
        mark('B ready')
        sync.send("ready")
        os.close(sync.write_fd)
    except BaseException as exc:
        try:
            sync.send(f"error {_describe(exc)}")
        finally:
            os._exit(1)
    try:
        if fifo_fd is not None:
            wait_for_start(fifo_fd)
        mark('B started')
        path = finish_and_exec(plan.spec, plan.seccomp_bpf, plan.extra_env, linux,
                               plan.new_keyring, plan.start_state)
    except BaseException as exc:
        print(f"vmvc-runtime: {_describe(exc)}", file=sys.stderr, flush=True)
        os._exit(127)
    os._exit(127 if path is None else 126)


def _cgroup_mounter(plan: InitPlan, linux: Linux) -> Callable[[int, str, int], None]:
    def mount_cgroup(root_fd: int, destination: str, flags: int) -> None:
        target = mounts.ensure_in_root(linux, root_fd, destination)
        try:
            if plan.cgroup_v1_hierarchies is None:
                linux.mount("cgroup2", mounts.fd_path(target), "cgroup2", flags)
                return
            linux.mount("tmpfs", mounts.fd_path(target), "tmpfs", flags & ~MS_RDONLY,
                        "mode=755")
        finally:
            os.close(target)
        own = None if plan.spec.namespaces.get("cgroup", "") is None else _own_v1_cgroups()
        for name in plan.cgroup_v1_hierarchies:
            options = f"none,name={name}" if name == "systemd" else name
            hierarchy = mounts.ensure_in_root(linux, root_fd, f"{destination}/{name}")
            try:
                if own is None:  # a new cgroup namespace: its root is the container's cgroup
                    linux.mount("cgroup", mounts.fd_path(hierarchy), "cgroup", flags, options)
                else:
                    _mount_own_v1_cgroup(linux, root_fd, destination, name, options,
                                         _own_path(own, name), hierarchy, flags)
            finally:
                os.close(hierarchy)
        if flags & MS_RDONLY:
            top = mounts.open_in_root(linux, root_fd, destination)
            try:
                linux.mount(None, mounts.fd_path(top), None,
                            MS_BIND | MS_REMOUNT | MS_RDONLY | flags)
            finally:
                os.close(top)
    return mount_cgroup


def _own_v1_cgroups() -> dict[str, str]:
    """hierarchy name → this process's cgroup in it, from the container's own /proc (the
    host's paths: no cgroup namespace)."""
    own = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(","):
                own[name.removeprefix("name=")] = path
    return own


def _own_path(own: dict[str, str], hierarchy: str) -> str:
    """This process's cgroup in *hierarchy* (a co-mounted one, ``cpu,cpuacct``, by its first
    controller); never the hierarchy's root by default: that would show the host's."""
    path = own.get(hierarchy) or own.get(hierarchy.split(",")[0].removeprefix("name="))
    if path is None:
        raise ContainerError(f"cgroup v1 hierarchy {hierarchy}: this process is in none of it "
                             "(/proc/self/cgroup)")
    return path


def _mount_own_v1_cgroup(linux: Linux, root_fd: int, destination: str, name: str,
                         options: str, path: str, target: int, flags: int) -> None:
    """Without a cgroup namespace a fresh v1 mount shows the host's whole hierarchy: mount
    it on a scratch directory, bind the container's own cgroup onto *target* (what runc
    shows: the container's limits at /sys/fs/cgroup/<name>), and drop the scratch mount."""
    scratch_name = f".vmvc-{name}"
    scratch = mounts.ensure_in_root(linux, root_fd, f"{destination}/{scratch_name}")
    try:
        linux.mount("cgroup", mounts.fd_path(scratch), "cgroup", flags & ~MS_RDONLY, options)
    finally:
        os.close(scratch)
    scratch = mounts.open_in_root(linux, root_fd, f"{destination}/{scratch_name}")  # the mount
    try:
        own = mounts.open_in_root(linux, scratch, path.lstrip("/") or ".")
        try:
            linux.mount(mounts.fd_path(own), mounts.fd_path(target), None, MS_BIND)
        finally:
            os.close(own)
        bound = mounts.open_in_root(linux, root_fd, f"{destination}/{name}")  # the new mount
        try:
            linux.mount(None, mounts.fd_path(bound), None, MS_BIND | MS_REMOUNT | flags)
        finally:
            os.close(bound)
        linux.umount2(mounts.fd_path(scratch), MNT_DETACH)
    finally:
        os.close(scratch)
    top = mounts.open_in_root(linux, root_fd, destination)
    try:
        os.rmdir(scratch_name, dir_fd=top)
    finally:
        os.close(top)


def _attach_terminal(plan: InitPlan, linux: Linux, root_fd: int) -> None:
    """A terminal of the container's devpts as stdio, its master sent to the engine, the
    terminal bound at /dev/console too (runc does the same)."""
    from runtime import console  # imported by the creator: the host's library is gone

    slave, _ = console.open_in_container(plan.console_fd, plan.spec.console_size,
                                         linux.fstatfs_type)
    target = mounts.ensure_in_root(linux, root_fd, "/dev/console", directory=False)
    try:  # bound from the fd: the terminal itself, not whatever a path names
        linux.mount(mounts.fd_path(slave), mounts.fd_path(target), None, MS_BIND)
    finally:
        os.close(target)
    console.become_stdio(slave)


def prepare_container(plan: InitPlan, linux: Linux) -> int | None:
    """Everything before the start barrier; returns the exec fifo's O_PATH fd (or None)."""
    spec = plan.spec
    shared = spec.rootfs_propagation in ("shared", "rshared")
    if "mount" in spec.namespaces:  # shared: a slave until the new root is in place
        linux.mount(None, "/", None, ROOTFS_PROPAGATION["" if shared else
                                                        spec.rootfs_propagation])
    nodev = MS_NODEV if plan.root_nodev else 0
    if plan.overlay is not None:
        linux.mount("overlay", plan.rootfs, "overlay", nodev, plan.overlay)
    else:
        linux.mount(plan.rootfs, plan.rootfs, None, MS_BIND | MS_REC)
        if nodev:
            linux.mount(None, plan.rootfs, None, MS_BIND | MS_REMOUNT | nodev)
    if plan.network_setup is not None:
        _await_go(plan, b"n", "plugging the network in")
        plan.network_setup()
        linux.link_up("lo")
    elif "network" in spec.namespaces and spec.namespaces["network"] is None:
        linux.link_up("lo")  # runc does the same
    # Through the host's own /proc, before the image's root is entered: B is in its new
    # namespaces already, and nothing of the image can stand in for these files.
    for kind, host in plan.host_namespaces.items():  # the path joined may have changed
        if namespace_id(kind) == host:  # since config.py looked
            raise ContainerError(f"linux.namespaces: the {kind} namespace joined is the "
                                 "host's: its sysctls are not written")
    for key, value in spec.sysctl.items():
        linux.write_file("/proc/sys/" + key.replace(".", "/"), value)
    if spec.oom_score_adj is not None:
        linux.write_file("/proc/self/oom_score_adj", str(spec.oom_score_adj))
    deferred = mounts.mount_all(linux, plan.rootfs, spec.mounts)
    mounts.make_devices(linux, plan.rootfs, spec.devices)
    if plan.create_hooks is not None and plan.report is not None:
        plan.report("hooks")  # prestart, createRuntime, createContainer: before pivot_root
        _await_go(plan, b"h", "the create hooks")
    fifo_fd = os.open(plan.fifo, os.O_PATH | os.O_CLOEXEC) if plan.fifo else None
    mounts.pivot_into(linux, plan.rootfs)
    root_fd = linux.open_root()
    try:
        _check_proc(spec, root_fd, deferred, linux)
        _enter_cgroup_namespace(plan, linux)  # the cgroup mounts show the namespace's root
        mounts.mount_cgroups(linux, root_fd, deferred, _cgroup_mounter(plan, linux))
        if spec.hostname is not None:
            if "uts" not in spec.namespaces:
                raise ContainerError("config.json: hostname needs a uts namespace")
            linux.sethostname(spec.hostname)
        if plan.console_fd >= 0:
            _attach_terminal(plan, linux, root_fd)
        for path in spec.readonly_paths:
            mounts.make_readonly(linux, root_fd, path)
        mounts.mask_all(linux, root_fd, spec.masked_paths)
        if spec.root_readonly:
            mounts.readonly_root(linux, root_fd)
    finally:
        os.close(root_fd)
    if shared:  # only now, on the container's own root (runc's order): a peer group of its
        # own, still a slave of the host's, so nothing mounted inside reaches the host
        linux.mount(None, "/", None, ROOTFS_PROPAGATION[spec.rootfs_propagation])
    for resource_id, soft, hard in spec.rlimits:
        linux.setrlimit(resource_id, soft, hard)
    if spec.no_new_privileges:
        linux.prctl(PR_SET_NO_NEW_PRIVS, 1)
    return fifo_fd


def _check_proc(spec: Spec, root_fd: int, deferred: list, linux: Linux) -> None:
    """Everything after pivot_root is mounted through /proc/self/fd: /proc must be the
    procfs the spec mounted (an image cannot have moved it), and must be there at all."""
    if not mounts.check_proc(linux, root_fd, spec.mounts) and (
            deferred or spec.masked_paths or spec.readonly_paths):
        raise ContainerError("config.json: linux.maskedPaths, linux.readonlyPaths and cgroup "
                             "mounts need proc mounted at /proc (mounts[].type proc)")


def wait_for_start(fifo_fd: int) -> None:
    """Block until ``start`` opens the exec fifo for reading, then tell it we go on."""
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)


def apply_identity(spec: Spec, linux: Linux) -> None:
    """Bounding set, user and groups, then the other capability sets (runc's order)."""
    caps = spec.capabilities
    bounding = cap_mask(caps["bounding"])
    for number in range(last_cap(linux.capbset_read) + 1):
        if not bounding & (1 << number):
            linux.prctl(PR_CAPBSET_DROP, number)
    linux.prctl(PR_SET_KEEPCAPS, 1)
    linux.setgroups(spec.additional_gids)
    linux.setresgid(spec.gid)
    linux.setresuid(spec.uid)
    linux.prctl(PR_SET_KEEPCAPS, 0)
    linux.capset(cap_mask(caps["effective"]), cap_mask(caps["permitted"]),
                 cap_mask(caps["inheritable"]))
    linux.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps["ambient"]:
        linux.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NUMBER[name])


def find_program(program: str, env: list[str]) -> str:
    if "/" in program:
        return program
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", program)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise ContainerError(f"exec {program}: not found in PATH={path}")


def finish_and_exec(spec: Spec, seccomp_bpf: bytes | None, extra_env: list[str],
                    linux: Linux, new_keyring: bool = True,
                    start_state: dict | None = None) -> str | None:
    """Identity, seccomp as late as possible, cwd, exec. Returns only if exec failed."""
    env = [*spec.env, *extra_env]
    program = find_program(spec.args[0], env)
    # Nothing of the host may be reachable once the container's own processes could look:
    # no open fd but stdio (CVE-2024-21626), not dumpable until execve, and the host's
    # interpreter not /proc/self/exe when the program's #! is read (CVE-2019-5736).
    linux.prctl(PR_SET_DUMPABLE, 0)
    os.closerange(3, 1 << 20)
    stub = sealed_stub()
    if new_keyring:
        linux.join_session_keyring()
    if seccomp_bpf is not None and not spec.no_new_privileges:
        linux.seccomp_load(seccomp_bpf)  # needs CAP_SYS_ADMIN: before the caps go
    apply_identity(spec, linux)
    try:
        os.chdir(spec.cwd)
    except OSError as exc:
        raise ContainerError(f"process.cwd {spec.cwd}: {exc.strerror}") from exc
    if spec.umask is not None:
        os.umask(spec.umask)
    if start_state is not None:  # startContainer: the container's own privileges only
        from runtime import hooks  # imported by the creator (runtime.container.create)

        hooks.run("startContainer", spec.hooks["startContainer"],
                  {**start_state, "pid": os.getpid()}, linux)
    _check_executable(program, spec.args[0])
    mark('exec')
    if seccomp_bpf is not None and spec.no_new_privileges:
        linux.seccomp_load(seccomp_bpf)
    environ = dict(e.split("=", 1) for e in env)
    try:
        linux.execve(stub, [program, *spec.args], environ)
    except OSError as exc:
        print(f"vmvc-runtime: exec {spec.args[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        os._exit(126)
    return None


def _check_executable(program: str, name: str) -> None:
    """The error a direct execve would give, said here: the stub can only say it failed."""
    if not os.path.exists(program):
        code, reason = 127, "No such file or directory"
    elif os.path.isdir(program) or not os.access(program, os.X_OK):
        code, reason = 126, "Permission denied"
    else:
        return
    print(f"vmvc-runtime: exec {name}: {reason}", file=sys.stderr, flush=True)
    os._exit(code)
