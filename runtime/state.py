"""Container state on disk: ``<root>/<id>/state.marshal`` plus the ``exec.fifo`` whose presence
means "created" (runc's scheme), and the status derived from the init process."""

from __future__ import annotations

import marshal
import os

from runtime.errors import ContainerError
from runtime.linux import Linux
from runtime.records import Record

OCI_VERSION = "1.0.2"
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")
FIFO = "exec.fifo"
STATE_FILE = "state.marshal"  # internal (``state`` prints the OCI JSON): no json import


class State(Record):
    id: str
    pid: int
    start_time: int  # the init's start time (clock ticks since boot): detects PID reuse
    bundle: str
    rootfs: str
    created: str
    cgroup: str  # relative cgroup path
    data_dir: str  # per-container writable dirs (overlay upper/work), removed on delete
    annotations: dict[str, str] = {}
    network: dict[str, str] = {}
    owner: str = ""
    hooks: dict[str, list[dict]] = {}  # poststart, poststop: what they run


def check_id(container_id: str) -> str:
    if not (0 < len(container_id) <= 128 and set(container_id) <= ID_CHARS
            and container_id[0] not in "_.+-"):
        raise ContainerError(f"invalid container id {container_id!r} (letters, digits, _.+-)")
    return container_id


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


class StateStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, check_id(container_id))

    def save(self, state: State) -> None:
        path = os.path.join(self.dir(state.id), STATE_FILE)
        with open(path + ".tmp", "wb") as handle:
            marshal.dump(vars(state), handle)
        os.rename(path + ".tmp", path)

    def load(self, container_id: str) -> State:
        path = os.path.join(self.dir(container_id), STATE_FILE)
        try:
            with open(path, "rb") as handle:
                return State(**marshal.load(handle))
        except FileNotFoundError as exc:
            raise ContainerError(f"container {container_id} does not exist") from exc
        except (ValueError, TypeError, EOFError) as exc:
            raise ContainerError(f"container {container_id}: state file {path} is damaged") \
                from exc

    def ids(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(name for name in os.listdir(self.root)
                      if os.path.exists(os.path.join(self.root, name, STATE_FILE)))

    def status(self, state: State) -> str:
        """created | running | paused | stopped, derived as runc derives it."""
        if process_start_time(state.pid) != state.start_time:
            return "stopped"
        if os.path.exists(os.path.join(self.dir(state.id), FIFO)):
            return "created"
        from runtime.cgroups import frozen

        return "paused" if frozen(state.cgroup) else "running"

    def oci_state(self, state: State) -> dict:
        status = self.status(state)
        return {
            "ociVersion": OCI_VERSION, "id": state.id, "status": status,
            "pid": state.pid if status != "stopped" else 0, "bundle": state.bundle,
            "rootfs": state.rootfs, "created": state.created, "owner": state.owner,
            "annotations": state.annotations,
        }


def open_pidfd(state: State, linux: Linux) -> int:
    """A pidfd for the container's init, or ContainerError if it is gone. The start time
    is checked *after* the pidfd is open: from then on the fd names that very process, so a
    signal through it can never reach another that reused the PID (the CLI's inits are
    reaped by the host's init, and their PIDs recycled)."""
    try:
        pidfd = linux.pidfd_open(state.pid)
    except OSError as exc:
        raise ContainerError(f"container {state.id} is not running") from exc
    if process_start_time(state.pid) != state.start_time:
        os.close(pidfd)
        raise ContainerError(f"container {state.id} is not running")
    return pidfd


def kill_if_alive(state: State, signal_number: int, linux: Linux) -> bool:
    try:
        pidfd = open_pidfd(state, linux)
    except ContainerError:
        return False
    try:
        linux.pidfd_send_signal(pidfd, signal_number)
    except ProcessLookupError:
        return False
    finally:
        os.close(pidfd)
    return True
