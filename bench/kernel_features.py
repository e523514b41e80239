"""Trying the kernel features containers need, for real, in throwaway child processes.

Each probe forks; the child unshares, mounts or filters and reports by exit status, so
nothing it does (a mount, a seccomp filter, a namespace) can outlive it or touch the
caller. Python 3.11 has no os.unshare, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

NAMESPACE_FLAGS = {
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
}
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ALLOW = 0x7FFF0000
REQUIRED_CONTROLLERS = ("cpu", "cpuset", "memory", "pids")


def _in_child(action: Callable[[], None]) -> str | None:
    """Run *action* in a forked child; None if it succeeded, else its error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read_end)
        code = 0
        try:
            action()
        except BaseException as exc:  # report anything, then leave without cleanup
            os.write(write_end, str(exc).encode()[:500])
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return message or f"child exited with status {os.waitstatus_to_exitcode(status)}"


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def try_namespace(kind: str) -> str | None:
    """Can this process create a namespace of *kind*? None if so, else why not."""
    if not os.path.exists(f"/proc/self/ns/{kind}"):
        return f"kernel has no {kind} namespaces (/proc/self/ns/{kind} missing)"
    return _in_child(lambda: _check(_libc.unshare(NAMESPACE_FLAGS[kind]), f"unshare({kind})"))


def try_overlayfs() -> str | None:
    """Mount an overlay in a private mount namespace and write through it.

    Its directories sit on a tmpfs mounted for the probe, so the answer does not depend on
    what /tmp is (an overlay cannot have its upper dir on another overlay).
    """
    scratch = Path(tempfile.mkdtemp(prefix="vmvc-overlay-probe-"))

    def mount_and_write() -> None:
        _check(_libc.unshare(NAMESPACE_FLAGS["mnt"]), "unshare(mnt)")
        _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        _check(_libc.mount(b"tmpfs", str(scratch).encode(), b"tmpfs", 0, b"size=1m"),
               "mount tmpfs")
        for name in ("lower", "upper", "work", "merged"):
            (scratch / name).mkdir()
        (scratch / "lower" / "file").write_text("lower")
        options = f"lowerdir={scratch}/lower,upperdir={scratch}/upper,workdir={scratch}/work"
        _check(_libc.mount(b"overlay", str(scratch / "merged").encode(), b"overlay", 0,
                           options.encode()), "mount overlay")
        (scratch / "merged" / "file").write_text("upper")
        if (scratch / "upper" / "file").read_text() != "upper":
            raise OSError("a write through the overlay did not reach the upper dir")
        if (scratch / "lower" / "file").read_text() != "lower":
            raise OSError("a write through the overlay changed the lower dir")

    try:
        return _in_child(mount_and_write)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def try_seccomp() -> str | None:
    """Install an allow-all seccomp filter and check the kernel reports mode 2."""

    def install() -> None:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        instruction = struct.pack("HBBI", 0x06, 0, 0, SECCOMP_RET_ALLOW)  # BPF_RET|BPF_K
        program = ctypes.create_string_buffer(instruction)
        fprog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(program))
        fprog_buffer = ctypes.create_string_buffer(fprog)
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog_buffer, 0, 0), "seccomp")
        status = Path("/proc/self/status").read_text()
        if "Seccomp:\t2" not in status:
            raise OSError("filter installed but /proc/self/status does not show mode 2")

    return _in_child(install)


@dataclass(frozen=True)
class CgroupLayout:
    kind: str  # "v2", "v1" or "hybrid"
    v1_controllers: tuple[str, ...]
    v2_controllers: tuple[str, ...]
    v2_mount: str | None

    @property
    def controllers(self) -> set[str]:
        return set(self.v1_controllers) | set(self.v2_controllers)

    def missing(self) -> list[str]:
        return [c for c in REQUIRED_CONTROLLERS if c not in self.controllers]


def cgroup_layout(mountinfo: str | None = None) -> CgroupLayout:
    """How cgroups are mounted here: pure v2, pure v1, or hybrid (v1 plus a cgroup2)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: set[str] = set()
    v2_mount = None
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        if fstype == "cgroup":
            v1 |= {o for o in options if o in _known_controllers()}
        elif fstype == "cgroup2" and v2_mount is None:
            v2_mount = fields[4]
    v2: tuple[str, ...] = ()
    if v2_mount is not None:
        try:
            v2 = tuple(Path(v2_mount, "cgroup.controllers").read_text().split())
        except OSError:
            v2 = ()
    if v2_mount is not None and not v1:
        kind = "v2"
    elif v2_mount is not None:
        kind = "hybrid"
    else:
        kind = "v1"
    return CgroupLayout(kind, tuple(sorted(v1)), v2, v2_mount)


def _known_controllers() -> set[str]:
    names = set()
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        names.add(line.split()[0])
    return names
