"""The runtime's library API: create, start, wait, exec, kill, delete and resource readings,
with runc's lifecycle and state semantics. The ``vmvc-runtime`` CLI is a thin layer on it;
the suite calls it directly (no process spawned per container beyond the container itself).
"""

from __future__ import annotations

import marshal
import os
import select
import time

from runtime.errors import ContainerError
from runtime.light import suppress
from runtime.state import FIFO, State, StateStore, check_id, kill_if_alive, process_start_time
from runtime.trace import mark

TYPE_CHECKING = False  # the modules below are imported where used: `start` needs none of
if TYPE_CHECKING:  # them, `delete` only cgroups (each CLI call pays for what it imports)
    from runtime import cgroups
    from runtime.config import Spec
    from runtime.linux import Linux
    from runtime.process import InitPlan

DEFAULT_ROOT = "/run/vmvc-runtime"
DEFAULT_DATA = os.environ.get("VMVC_RUNTIME_DATA", "/var/lib/vmvc-runtime")
NETWORK_ANNOTATION = "org.vmvc.network"
IMAGE_ANNOTATION = "org.vmvc.image.layout"
"""config.json annotation: an OCI image layout whose layers become the overlayfs root."""
START_TIMEOUT = 10.0
SIGKILL, SIGTERM = 9, 15  # not from `signal`: it imports enum (~3 ms of start-up)
PathLike = str | os.PathLike
_subreaper = False


class Runtime:
    def __init__(self, root: PathLike = DEFAULT_ROOT, data: PathLike = DEFAULT_DATA,
                 linux: Linux | None = None) -> None:
        self.store = StateStore(root)
        self.data = os.fspath(data)
        self._linux = linux

    @property
    def linux(self) -> Linux:
        if self._linux is None:
            from runtime.linux import Linux

            self._linux = Linux()
        return self._linux

    # -- create ---------------------------------------------------------------------------
    def create(self, container_id: str, bundle: PathLike, config: dict | None = None, *,
               image: PathLike | None = None, stdio: tuple[int, int, int] | None = None,
               pid_file: PathLike | None = None, network: str | None = None,
               new_keyring: bool = True, console_socket: str | None = None) -> State:
        """Create the container, its init blocked before exec until :meth:`start`.

        *network* is ``none`` (loopback only, the default) or ``bridge``; the config's
        ``org.vmvc.network`` annotation says the same for bundles run through the CLI.
        """
        global _subreaper
        from runtime import cgroups, mounts, storage
        from runtime.config import load_bundle, parse_config
        from runtime.process import InitPlan, become_subreaper, spawn_init

        mark("create")
        check_id(container_id)
        bundle = os.path.realpath(bundle)
        spec = parse_config(config) if config is not None else \
            load_bundle(bundle, os.path.join(self.store.root, ".config-cache"))
        for warning in spec.warnings:
            os.write(2, f"vmvc-runtime: warning: config.json: {warning}\n".encode())
        image = image or spec.annotations.get(IMAGE_ANNOTATION)
        state_dir = self.store.dir(container_id)
        os.makedirs(self.store.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(state_dir, 0o711)  # runc's modes: a user-namespaced init must reach the fifo
        except FileExistsError as exc:
            raise ContainerError(f"container {container_id} already exists") from exc
        data_dir = os.path.join(self.data, "containers", container_id)
        cgroup = None
        mode = network or spec.annotations.get(NETWORK_ANNOTATION, "none")
        console_fd = -1
        try:
            storage.private_dir(self.data, storage.PASSAGE)  # see runtime.storage
            rootfs, overlay = self._prepare_root(spec, bundle, image, data_dir)
            cgroup = cgroups.for_container(spec.cgroups_path, container_id)
            cgroup.create(spec.resources)
            _check_device_policy(spec, cgroup)
            fifo = os.path.join(state_dir, FIFO)
            os.mkfifo(fifo, 0o600)
            if spec.uid_mappings:  # owned by the container's root, as runc does
                os.chown(fifo, _host_id(spec.uid_mappings, 0), _host_id(spec.gid_mappings, 0))
            with open(os.path.join(state_dir, "config.marshal"), "wb") as handle:
                marshal.dump(spec.raw, handle)
            plan = InitPlan(
                spec=spec, rootfs=rootfs, overlay=overlay, fifo=fifo,
                cgroup_v1_hierarchies=None if cgroup.unified else mounts.host_cgroup_hierarchies(),
                seccomp_bpf=self._seccomp(spec), stdio=stdio, new_keyring=new_keyring,
                # no device filter (v2 without eBPF): no device nodes from the root either
                root_nodev=cgroup.device_filter_error is not None,
            )
            if spec.terminal or console_socket is not None:
                from runtime import console

                console.check(spec.terminal, console_socket)
                plan.console_fd = console_fd = console.connect(str(console_socket))
            if any(k in spec.hooks for k in ("prestart", "createRuntime", "createContainer")):
                plan.create_hooks = lambda pid: self._create_hooks(spec, container_id, bundle,
                                                                   pid)
            if "startContainer" in spec.hooks:  # the init runs them, past pivot_root: what
                import json  # they need is imported here  # noqa: F401

                from runtime import hooks  # noqa: F401

                plan.start_state = _hook_state(spec, container_id, bundle, "created")
            if spec.sysctl:
                plan.host_namespaces = _host_namespaces(spec)
            address = self._plan_network(mode, spec, container_id, plan)
            if not _subreaper:
                become_subreaper(self.linux)
                _subreaper = True
            mark('spawn')
            pid = spawn_init(plan, cgroup.add, self.linux)
            mark('created')
            state = State(
                id=container_id, pid=pid, start_time=process_start_time(pid) or 0,
                bundle=bundle, rootfs=rootfs, created=_now(), cgroup=cgroup.rel,
                data_dir=data_dir, annotations=spec.annotations,
                network={"mode": mode, **({"address": address} if address else {})},
                hooks={kind: [vars(hook) for hook in hooks] for kind, hooks in spec.hooks.items()
                       if kind in ("poststart", "poststop")},
            )
            self.store.save(state)
            if pid_file is not None:
                with open(pid_file, "w") as handle:
                    handle.write(f"{pid}")
        except BaseException:
            self._undo_create(container_id, mode, cgroup, data_dir, state_dir)
            raise
        finally:
            if console_fd >= 0:  # the init holds it, or failed: the creator keeps nothing
                os.close(console_fd)
        return state

    def _create_hooks(self, spec: Spec, container_id: str, bundle: str, pid: int) -> None:
        """prestart and createRuntime in the runtime's namespaces, then createContainer in
        the container's, while its init waits before pivot_root (runtime.hooks)."""
        from runtime import hooks

        state = {**_hook_state(spec, container_id, bundle, "creating"), "pid": pid}
        for kind in ("prestart", "createRuntime"):
            hooks.run(kind, spec.hooks.get(kind, []), state, self.linux)
        hooks.run("createContainer", spec.hooks.get("createContainer", []), state, self.linux,
                  join_pid=pid, namespaces=tuple(spec.namespaces))

    def _state_hooks(self, state: State, kind: str, status: str) -> None:
        """poststart, poststop: from the saved state, in the runtime's namespaces."""
        if kind not in state.hooks:
            return
        from runtime import hooks
        from runtime.config import Hook

        oci = {**self.store.oci_state(state), "status": status}
        for warning in hooks.run(kind, [Hook(**h) for h in state.hooks[kind]], oci,
                                 self.linux):
            os.write(2, f"vmvc-runtime: warning: {warning}\n".encode())

    def _undo_create(self, container_id: str, mode: str, cgroup: cgroups.Cgroup | None,
                     data_dir: str, state_dir: str) -> None:
        """Every step of a failed create undone, each on its own: one failing undo must
        not leave the others (or hide the original error)."""
        steps = [lambda: self._unplug(container_id) if mode == "bridge" else None,
                 lambda: _remove_cgroup(cgroup) if cgroup is not None and cgroup.created
                 else None,
                 lambda: _rmtree(data_dir), lambda: _rmtree(state_dir)]
        for step in steps:
            with suppress(Exception):
                step()

    def _prepare_root(self, spec: Spec, bundle: str, image: PathLike | None,
                      data_dir: str) -> tuple[str, str | None]:
        from runtime import storage

        if image is None:
            rootfs = os.path.realpath(os.path.join(bundle, spec.root_path))
            if not os.path.isdir(rootfs):
                raise ContainerError(f"config.json: root.path {rootfs} is not a directory")
            _resolve_username(spec, rootfs)
            _set_home(spec, rootfs)
            return rootfs, None
        from pathlib import Path

        from runtime.oci_image import read_manifest, unpack_layers

        lowers = unpack_layers(read_manifest(Path(image)), Path(self.data, "layers"))
        storage.private_dir(os.path.join(self.data, "containers"), storage.PASSAGE)
        storage.private_dir(data_dir)  # the upper dir's setuid files: for root's eyes only
        if spec.namespaces.get("user", "") is None:  # its root mounts the overlay: let it pass
            root_uid = _host_id(spec.uid_mappings, 0)
            os.chown(data_dir, root_uid, _host_id(spec.gid_mappings, 0))
            storage.layer_store(os.path.join(self.data, "layers"), root_uid)
        for name in ("upper", "work", "rootfs"):
            os.makedirs(os.path.join(data_dir, name), exist_ok=True)
        _resolve_username(spec, str(lowers[0]))  # vmvc images have one layer
        _set_home(spec, str(lowers[0]))
        lowerdir = ":".join(str(p) for p in lowers)
        upper, work = os.path.join(data_dir, "upper"), os.path.join(data_dir, "work")
        overlay = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
        return os.path.join(data_dir, "rootfs"), overlay

    def _plan_network(self, mode: str, spec: Spec, container_id: str,
                      plan: InitPlan) -> str | None:
        """Bridge mode: reserve an address and let the creator and init plug eth0 in."""
        if mode not in ("none", "bridge"):
            raise ContainerError(f"network mode {mode!r}: choose none or bridge")
        if mode == "none":
            return None
        if spec.namespaces.get("network", "joined") is not None:
            raise ContainerError("network mode bridge needs a new network namespace "
                                 "(linux.namespaces: network without a path)")
        from runtime import network

        address = network.lease_address(f"vmvc-runtime container {container_id}",
                                        self.store.dir(container_id))
        with open(os.path.join(self.store.dir(container_id), "address"), "w") as handle:
            handle.write(address)
        plan.on_init_pid = lambda pid: network.plug(container_id, pid)
        plan.network_setup = lambda: network.configure_inside(address)
        return address

    def _unplug(self, container_id: str) -> None:
        from runtime import network

        network.unplug(container_id)
        path = os.path.join(self.store.dir(container_id), "address")
        with suppress(FileNotFoundError):
            with open(path) as handle:
                network.release_address(handle.read())
            os.unlink(path)

    def _seccomp(self, spec: Spec) -> bytes | None:
        if spec.seccomp is None:
            return None
        from runtime import storage
        from runtime.seccomp import cached_bpf

        return cached_bpf(spec.seccomp, storage.private_dir(os.path.join(self.data, "seccomp")))

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, container_id: str) -> None:
        """Let a created container's init exec its process (reads the exec fifo)."""
        state = self.store.load(container_id)
        status = self.store.status(state)
        if status != "created":
            raise ContainerError(f"container {container_id} is {status}, not created: "
                                 "cannot start it")
        fifo = os.path.join(self.store.dir(container_id), FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                ready, _, _ = select.select([fd], [], [], 0.05)
                if ready and os.read(fd, 1):
                    break
                if process_start_time(state.pid) != state.start_time:
                    raise ContainerError(f"container {container_id}: init exited before start")
                if time.monotonic() > deadline:
                    raise ContainerError(f"container {container_id}: init did not take the "
                                         "start signal")
            os.unlink(fifo)  # only now: the fifo's absence is what "running" means
        finally:
            os.close(fd)
        self._state_hooks(state, "poststart", "running")

    def wait(self, container_id: str) -> int:
        """Wait for the container's process to exit; its exit status (128+N if killed)."""
        mark("wait")
        state = self.store.load(container_id)
        try:
            _, status = os.waitpid(state.pid, 0)
        except ChildProcessError as exc:
            raise ContainerError(f"container {container_id} was not created by this process: "
                                 "its exit status is not available here") from exc
        return _exit_code(status)

    def kill(self, container_id: str, signal_number: int = SIGTERM,
             every_process: bool = False) -> None:
        """Signal the container's process (``every_process``: all in its cgroup)."""
        state = self.store.load(container_id)
        if self.store.status(state) == "stopped" or \
                not kill_if_alive(state, signal_number, self.linux):
            raise ContainerError(f"container {container_id} is not running")
        if every_process:
            from runtime import cgroups

            for pid in cgroups.at(state.cgroup).pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, signal_number)

    def pause(self, container_id: str, paused: bool = True) -> None:
        """Freeze every process of a running container (resume: thaw a paused one), as
        runc pause/resume do, through the freezer cgroup."""
        state = self.store.load(container_id)
        status = self.store.status(state)
        if status != ("running" if paused else "paused"):
            raise ContainerError(f"container {container_id} is {status}, not "
                                 f"{'running' if paused else 'paused'}")
        from runtime import cgroups

        cgroups.at(state.cgroup).freeze(paused)

    def update(self, container_id: str, resources: dict) -> None:
        """Change the limits of a created, running or paused container (the fields given:
        runc update's rule); its device rules stay as created."""
        from runtime.config import parse_update

        state = self.store.load(container_id)
        if self.store.status(state) == "stopped":
            raise ContainerError(f"container {container_id} is stopped")
        from runtime import cgroups

        cgroups.at(state.cgroup).apply(parse_update(resources))

    def pids(self, container_id: str) -> list[int]:
        """Every process of the container (host pids), from its cgroup."""
        state = self.store.load(container_id)
        if self.store.status(state) == "stopped":
            raise ContainerError(f"container {container_id} is not running")
        from runtime import cgroups

        return sorted(cgroups.at(state.cgroup).pids())

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped (or created) container; ``force`` kills a running one first."""
        mark("delete")
        state = self.store.load(container_id)
        status = self.store.status(state)
        if status in ("running", "paused") and not force:
            raise ContainerError(f"container {container_id} is running: stop it first or use "
                                 "--force")
        from runtime import cgroups

        cgroup = cgroups.at(state.cgroup)
        if status != "stopped":
            kill_if_alive(state, SIGKILL, self.linux)
        _kill_cgroup(cgroup)
        _reap_quietly(state.pid)
        cgroup.delete()
        if state.network.get("mode") == "bridge":
            self._unplug(container_id)
        _rmtree(state.data_dir)
        _rmtree(self.store.dir(container_id))
        self._state_hooks(state, "poststop", "stopped")

    def state(self, container_id: str) -> dict:
        return self.store.oci_state(self.store.load(container_id))

    def list(self) -> list[dict]:
        states = []
        for container_id in self.store.ids():
            try:
                states.append(self.state(container_id))
            except ContainerError:
                continue
        return states

    def usage(self, container_id: str) -> cgroups.Usage:
        from runtime import cgroups

        return cgroups.at(self.store.load(container_id).cgroup).usage()

    def oom_killed(self, container_id: str) -> bool:
        """Did the OOM killer kill a process of this container (memory limit reached)?"""
        try:
            return self.usage(container_id).oom_kills > 0
        except (OSError, ContainerError):
            return False

    def spec(self, container_id: str) -> Spec:
        with open(os.path.join(self.store.dir(container_id), "config.marshal"), "rb") as handle:
            from runtime.config import parse_config

            return parse_config(marshal.load(handle))

    def run(self, container_id: str, bundle: PathLike, config: dict | None = None,
            **kw) -> int:
        """create + start + wait + delete: the container's exit status."""
        self.create(container_id, bundle, config, **kw)
        try:
            self.start(container_id)
            return self.wait(container_id)
        finally:
            self.delete(container_id, force=True)

    def exec(self, container_id: str, args: list[str], **kw) -> int:
        from runtime.exec import exec_in

        state = self.store.load(container_id)
        if self.store.status(state) != "running":
            raise ContainerError(f"container {container_id} is not running")
        return exec_in(state, self.spec(container_id), args, self.linux,
                       seccomp_cache=os.path.join(self.data, "seccomp"), **kw)


def _hook_state(spec: Spec, container_id: str, bundle: str, status: str) -> dict:
    """The OCI state a hook reads on its stdin, but the pid (known later)."""
    return {"ociVersion": spec.raw.get("ociVersion", "1.0.2"), "id": container_id,
            "status": status, "bundle": bundle, "annotations": spec.annotations}


def _host_namespaces(spec: Spec) -> dict[str, tuple[int, int]]:
    """The runtime's own namespaces of each kind the config joins by path, where sysctls
    may be written (B refuses to write through one of them)."""
    from runtime.linux import namespace_id

    return {kind: namespace_id(kind) for kind in ("network", "ipc", "uts")
            if spec.namespaces.get(kind, "") not in ("", None)}


def _host_id(mappings: list, container_id: int) -> int:
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    raise ContainerError(f"config.json: id {container_id} is not mapped in the user namespace")


def _set_home(spec: Spec, rootfs: str) -> None:
    """HOME, when the process's environment lacks it: the user's home in the container's
    /etc/passwd, else "/" (runc and crun set it so); stored for exec too."""
    from runtime.account_files import with_home

    env = with_home(spec.env, rootfs, spec.uid)
    if env is not spec.env:
        spec.env = env
        spec.raw.setdefault("process", {})["env"] = env


def _resolve_username(spec: Spec, rootfs: str) -> None:
    """process.user.username → uid and gid from the container's own /etc/passwd."""
    if not spec.username:
        return
    from runtime.account_files import open_account_file

    try:
        with open_account_file(rootfs, "/etc/passwd") as handle:
            for line in handle:
                fields = line.strip().split(":")
                if len(fields) >= 4 and fields[0] == spec.username:
                    if not (fields[2].isdigit() and fields[3].isdigit()):
                        break
                    spec.uid, spec.gid = int(fields[2]), int(fields[3])
                    spec.additional_gids = spec.additional_gids or _groups_of(
                        rootfs, spec.username)
                    # exec reads the stored config: it must find the ids, not the name
                    user = spec.raw.setdefault("process", {}).setdefault("user", {})
                    user.update(uid=spec.uid, gid=spec.gid, additionalGids=spec.additional_gids)
                    user.pop("username", None)
                    return
    except OSError:
        pass
    raise ContainerError(f"config.json: process.user.username: no user {spec.username!r} in "
                         "the container's /etc/passwd")


def _groups_of(rootfs: str, username: str) -> list[int]:
    """Supplementary groups of *username* from the container's /etc/group."""
    from runtime.account_files import open_account_file

    groups = []
    with suppress(OSError), open_account_file(rootfs, "/etc/group") as handle:
        for line in handle:
            fields = line.strip().split(":")
            if len(fields) >= 4 and username in fields[3].split(",") and fields[2].isdigit():
                groups.append(int(fields[2]))
    return groups


def _check_device_policy(spec: Spec, cgroup: cgroups.Cgroup) -> None:
    """Where the cgroup could not take the device filter (v2 with eBPF refused), a container
    that can make device nodes could open any device: refuse it, never ignore the rules."""
    if cgroup.device_filter_error is None:
        return
    can_mknod = any("CAP_MKNOD" in spec.capabilities[s] for s in ("bounding", "effective"))
    if can_mknod:
        raise ContainerError("config.json: linux.resources.devices cannot be enforced on cgroup "
                             f"v2 here (eBPF device filter: {cgroup.device_filter_error}) while "
                             "CAP_MKNOD is granted: drop CAP_MKNOD")


def _kill_cgroup(cgroup: cgroups.Cgroup) -> None:
    for pid in cgroup.pids():
        with suppress(ProcessLookupError):
            os.kill(pid, SIGKILL)
    from runtime import cgroups

    if cgroups.frozen(cgroup.rel, cgroup.root):  # a paused container's SIGKILL lands once
        with suppress(ContainerError, OSError):  # it thaws (runc thaws it too)
            cgroup.freeze(False)


def _reap_quietly(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if process_start_time(pid) is None:
                return
        time.sleep(0.002)


def _remove_cgroup(cgroup: cgroups.Cgroup) -> None:
    _kill_cgroup(cgroup)
    cgroup.delete()


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _rmtree(path: str) -> None:
    """Remove a tree (shutil costs the runtime's start-up more than these lines)."""
    if not os.path.lexists(path):
        return
    for top, dirs, files in os.walk(path, topdown=False):
        for name in files:
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(top, name))
        for name in dirs:
            full = os.path.join(top, name)
            with suppress(FileNotFoundError):
                os.unlink(full) if os.path.islink(full) else os.rmdir(full)
    with suppress(FileNotFoundError):
        os.rmdir(path)
