"""The seam where the runtime touches the kernel: every syscall the container setup makes.

``Linux`` is the real thing (ctypes where Python 3.11 has no call); ``RecordingLinux`` (in
tests) records the calls so the order of the setup sequence is unit-tested without root,
beside the real tests. Errors surface as OSError with the failing call named.
"""

from __future__ import annotations

import errno
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes

_libc = None  # libc through ctypes, loaded by the first Linux(): `start` and `delete` of a
# stopped container make no such call, and ctypes costs ~3 ms of every CLI call


def _load_libc() -> None:
    global _libc, ctypes
    if _libc is not None:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p)
    libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
    libc.unshare.argtypes = (ctypes.c_int,)
    libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.syscall.restype = ctypes.c_long
    _libc = libc

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS, "cgroup": CLONE_NEWCGROUP, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "network": CLONE_NEWNET,
}
NAMESPACE_PROC = {"mount": "mnt", "cgroup": "cgroup", "uts": "uts", "ipc": "ipc",
                  "user": "user", "pid": "pid", "network": "net"}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 16, 32, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 1024, 2048, 4096, 8192, 16384
MS_SILENT, MS_UNBINDABLE, MS_PRIVATE = 32768, 1 << 17, 1 << 18
MS_SLAVE, MS_SHARED = 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
MNT_DETACH = 2


def namespace_id(kind: str, pid: str = "self") -> tuple[int, int]:
    """Which namespace of *kind* process *pid* is in: (st_dev, st_ino) of its /proc link."""
    st = os.stat(f"/proc/{pid}/ns/{NAMESPACE_PROC[kind]}")
    return st.st_dev, st.st_ino

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS = 1, 4, 8
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 24, 38, 22
PR_SET_CHILD_SUBREAPER, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 36, 47, 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
SYS_PIVOT_ROOT = 155  # x86_64
SYS_CAPSET = 126
SYS_SETGROUPS = 116
SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING = 250, 1
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 1
PR_CAPBSET_READ = 23
SYS_OPENAT2 = 437
SYS_PIDFD_SEND_SIGNAL = 424
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_IN_ROOT = 0x02, 0x04, 0x10
PROC_SUPER_MAGIC = 0x9FA0


def _named(call: str, fn, *args) -> None:
    """Run an os-level call; a failure says which call, on what."""
    try:
        fn(*args)
    except OSError as exc:
        raise OSError(exc.errno, f"{call}: {exc.strerror}") from exc


def _check(result: int, call: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")


class Linux:
    """The real kernel interface. Methods are named after the syscalls they make."""

    def __init__(self) -> None:
        _load_libc()

    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(flags), "unshare")

    def setns(self, fd: int, nstype: int) -> None:
        _check(_libc.setns(fd, nstype), "setns")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        enc = lambda v: None if v is None else os.fsencode(v)  # noqa: E731
        _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
               f"mount {fstype or ''} {target}".replace("  ", " "))

    def umount2(self, target: str, flags: int) -> None:
        _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        _check(_libc.syscall(SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old)),
               "pivot_root")

    def chdir(self, path: str) -> None:
        _named(f"chdir {path}", os.chdir, path)

    def sethostname(self, name: str) -> None:
        encoded = name.encode()
        _check(_libc.sethostname(encoded, len(encoded)), "sethostname")

    def link_up(self, name: str) -> None:
        """Set IFF_UP on interface *name* of this network namespace (two ioctls)."""
        fd = _libc.socket(2, 2 | 0o2000000, 0)  # AF_INET, SOCK_DGRAM | SOCK_CLOEXEC
        _check(fd, "socket")
        try:
            request = ctypes.create_string_buffer(struct.pack("16sH14x", name.encode(), 0))
            _check(_libc.ioctl(fd, SIOCGIFFLAGS, request), f"SIOCGIFFLAGS {name}")
            flags = struct.unpack_from("16sH", request.raw)[1]
            request = ctypes.create_string_buffer(struct.pack("16sH14x", name.encode(),
                                                              flags | IFF_UP))
            _check(_libc.ioctl(fd, SIOCSIFFLAGS, request), f"SIOCSIFFLAGS {name}")
        finally:
            os.close(fd)

    def mknod(self, path: str, mode: int, device: int, dir_fd: int | None = None) -> None:
        _named(f"mknod {path}", lambda: os.mknod(path, mode, device, dir_fd=dir_fd))

    def symlink(self, target: str, path: str, dir_fd: int | None = None) -> None:
        _named(f"symlink {path}", lambda: os.symlink(target, path, dir_fd=dir_fd))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> None:
        _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), 0, 0),
               f"prctl({option})")

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0)
        data = struct.pack("IIIIII", effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF,
                           inheritable & 0xFFFFFFFF, effective >> 32, permitted >> 32,
                           inheritable >> 32)
        _check(_libc.syscall(SYS_CAPSET, header, data), "capset")

    def setgroups(self, groups: list[int]) -> None:
        _named("setgroups", os.setgroups, groups)

    def setresgid(self, gid: int) -> None:
        _named(f"setgid {gid}", os.setresgid, gid, gid, gid)

    def setresuid(self, uid: int) -> None:
        _named(f"setuid {uid}", os.setresuid, uid, uid, uid)

    def setrlimit(self, resource: int, soft: int, hard: int) -> None:
        import resource as _resource

        _named(f"setrlimit {resource}", _resource.setrlimit, resource, (soft, hard))

    def join_session_keyring(self) -> None:
        """A new anonymous session keyring: keys of the host's session stay out of reach."""
        if _libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            err = ctypes.get_errno()
            if err not in (errno.ENOSYS, errno.EDQUOT, errno.EACCES):  # as runc tolerates
                raise OSError(err, f"keyctl(join session keyring): {os.strerror(err)}")

    def seccomp_load(self, bpf: bytes) -> None:
        """Install a compiled filter (struct sock_filter array) for this process."""
        program = ctypes.create_string_buffer(bpf)
        fprog = ctypes.create_string_buffer(
            struct.pack("HxxxxxxQ", len(bpf) // 8, ctypes.addressof(program)))
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0), "seccomp")

    def write_file(self, path: str, data: str) -> None:
        """Write procfs/cgroupfs/sysfs files so the kernel's refusal is never lost."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode())
        finally:
            os.close(fd)

    def execve(self, path: str | int, args: list[str], env: dict[str, str]) -> None:
        """*path* may be an fd (fexecve): the exec stub runs from a sealed memfd."""
        os.execve(path, args, env)

    def openat2(self, dirfd: int, path: str, flags: int, resolve: int) -> int:
        """open(2) with the kernel resolving *path* under the rules in *resolve*
        (RESOLVE_IN_ROOT: symlinks and '..' never leave *dirfd*): no user-space walk
        that an image's symlinks could redirect between check and use."""
        how = struct.pack("QQQ", flags | os.O_CLOEXEC, 0, resolve)
        fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), how, len(how))
        _check(fd, f"open {path}")
        return fd

    def open_root(self) -> int:
        """An O_PATH fd of this process's root directory (the container's, after pivot)."""
        return os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def fstatfs_type(self, fd: int) -> int:
        """The file system magic of the file *fd* is on (struct statfs.f_type)."""
        buf = ctypes.create_string_buffer(120)
        _check(_libc.fstatfs(fd, buf), "fstatfs")
        return struct.unpack_from("q", buf.raw)[0]

    def capbset_read(self, number: int) -> bool | None:
        """Is capability *number* in the bounding set; None if the kernel does not know it."""
        result = _libc.prctl(PR_CAPBSET_READ, ctypes.c_ulong(number), 0, 0, 0)
        if result < 0:
            if ctypes.get_errno() == errno.EINVAL:
                return None
            _check(result, f"prctl(PR_CAPBSET_READ, {number})")
        return bool(result)

    def setsid(self) -> None:
        _named("setsid", os.setsid)

    def pidfd_open(self, pid: int) -> int:
        return os.pidfd_open(pid)

    def pidfd_send_signal(self, pidfd: int, signal_number: int) -> None:
        """A signal to exactly the process *pidfd* was opened for, even if its PID was
        reused meanwhile (``signal`` costs ~3 ms of import: the syscall directly)."""
        _check(_libc.syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, signal_number, None, 0),
               "pidfd_send_signal")
