"""runsc's sandboxes as the host sees them: the sandbox (the sentry, ``runsc-sandbox``) and
the gofer (``runsc-gofer``) that ``runsc create`` starts and leaves running.

They are made the harness's children while ``create`` runs and reaped as soon as they
exit, as containerd-shim-runsc (a subreaper) does; and when runsc cannot remove them itself
(a create killed half-way, before runsc recorded the container), they are found by their
command lines and removed with their cgroups and lock files.
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

from paths import BENCH_STATE_DIR
from runtime.cgroups import DEFAULT_PREFIX
from runtime.linux import PR_SET_CHILD_SUBREAPER, Linux

STATE_ROOT = BENCH_STATE_DIR / "gvisor"  # runsc's --root (oci_cli: one per backend)
CGROUP_ROOT = Path("/sys/fs/cgroup")
SANDBOX_PROCESSES = (b"runsc-sandbox", b"runsc-gofer")  # their argv[0]
HALF_CREATED_AGE = 60.0  # seconds: a create in progress records its state within a second


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
    its sandbox and gofer may live on, its cgroups and lock file do. Those of our state root
    whose container id is *container_id* (with "": every one a lock file or a process
    names), removed: processes killed, ``vmvc-<id>`` cgroups removed in every hierarchy
    runsc made them in (blkio and name=systemd too), lock files."""
    removed = []
    locks = orphan_locks(container_id)
    ids = {container_id} if container_id else {lock_id(lock) for lock in locks}
    for pid, found in sandbox_processes(container_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            removed.append(f"gvisor sandbox process {pid} ({found})")
        ids.add(found)
    for found in sorted(ids):
        cgroups = [*CGROUP_ROOT.glob(f"*/{DEFAULT_PREFIX}{found}"),
                   *CGROUP_ROOT.glob(f"{DEFAULT_PREFIX}{found}")]
        removed += [f"gvisor cgroup {path}: {remove_cgroup(path)}" for path in sorted(cgroups)]
    for lock in locks:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            removed.append(f"gvisor lock file {lock}")
    return removed


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


def orphan_locks(container_id: str = "") -> list[Path]:
    """runsc's lock files (``<sandbox>_sandbox:<container>.lock``) that no state file goes
    with: *container_id*'s, or (with "") all those no create in progress can own."""
    found = []
    pattern = f"{container_id}_sandbox:*.lock" if container_id else "*_sandbox:*.lock"
    for lock in sorted(STATE_ROOT.glob(pattern)) if STATE_ROOT.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if not lock.with_suffix(".state").exists() and (
                    container_id or time.time() - lock.stat().st_mtime > HALF_CREATED_AGE):
                found.append(lock)
    return found


def lock_id(lock: Path) -> str:
    """The container id in a lock file's name."""
    return lock.name.removesuffix(".lock").rpartition("_sandbox:")[2]
