"""The image's /etc/passwd and /etc/group, read on the host to resolve a username.

The image is not trusted: its account files are opened by the kernel inside its root
(openat2 RESOLVE_IN_ROOT, as every mount target is: no symlink or ``..`` leaves it, no check
and use apart), without blocking (a FIFO would hang ``create`` forever) or taking a
terminal, and read only if they are regular files, up to a bound.
"""

from __future__ import annotations

import io
import os
import stat

from runtime.errors import ContainerError

MAX_BYTES = 16 << 20  # far beyond any real account file; an endless one stops here
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY


def open_account_file(rootfs: str, path: str) -> io.StringIO:
    """*path* (``/etc/passwd``, ``/etc/group``) of *rootfs*, read whole, as lines to iterate.
    OSError (a missing file) as open() would raise it; ContainerError for anything but a
    regular file."""
    from runtime.linux import Linux
    from runtime.mounts import open_in_root

    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_in_root(Linux(), root_fd, path, flags=_FLAGS)
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ContainerError(f"config.json: process.user.username: the container's {path} "
                                 f"is not a regular file (mode {stat.filemode(mode)})")
        return io.StringIO(handle.read(MAX_BYTES).decode(errors="replace"))


def home_of(rootfs: str, uid: int) -> str:
    """The home directory of *uid* in *rootfs*'s /etc/passwd, or "/" (runc's rule for a
    process whose environment has no HOME)."""
    try:
        with open_account_file(rootfs, "/etc/passwd") as handle:
            for line in handle:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
                    return fields[5]
    except (OSError, ContainerError):
        pass
    return "/"


def with_home(env: list[str], rootfs: str, uid: int) -> list[str]:
    """*env* with HOME set as runc sets it when it is missing."""
    if any(item.startswith("HOME=") for item in env):
        return env
    return [*env, f"HOME={home_of(rootfs, uid)}"]
