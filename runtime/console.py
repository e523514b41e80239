"""process.terminal: a pseudo-terminal for the container's process, its master handed to
the engine through ``--console-socket`` (runc's protocol: one message on a connected Unix
socket, the master in SCM_RIGHTS, the terminal's name as the data), the way ``podman run
-t`` and ``docker run -t`` get a terminal. conmon or containerd-shim then own the master;
the runtime keeps nothing.

The creator imports this module before it forks: once the init has entered the container's
root, the host's standard library is out of reach.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Callable

from runtime.errors import ContainerError

TIOCGPTN, TIOCSPTLCK, TIOCSCTTY, TIOCSWINSZ = 0x80045430, 0x40045431, 0x540E, 0x5414
TIOCGPTPEER = 0x5441  # the slave of this master, opened by the kernel: no path lookup
DEVPTS_SUPER_MAGIC = 0x1CD1


def connect(path: str) -> int:
    """The engine's console socket, connected by the creator (the init cannot reach the
    path from inside the container); the fd the init inherits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise ContainerError(f"--console-socket {path}: {exc.strerror}") from exc
    return sock.detach()


def check(terminal: bool, console_socket: str | None, detached: bool = True) -> None:
    """runc's rules: a terminal needs somewhere to send it; a socket needs a terminal."""
    if terminal and console_socket is None:
        raise ContainerError("process.terminal is true: give --console-socket (the engine's "
                             "socket that receives the terminal)" if detached else
                             "process.terminal is true: vmvc-runtime has no terminal of its "
                             "own to give a foreground run; give --console-socket")
    if console_socket is not None and not terminal:
        raise ContainerError("--console-socket given but process.terminal is false")


def open_in_container(console_fd: int, size: tuple[int, int] | None,
                      fs_type: Callable[[int], int]) -> tuple[int, str]:
    """A new terminal of the container's own devpts (``/dev/ptmx`` after pivot_root): its
    master sent through *console_fd*; returns the slave (fd, name). The slave comes from the
    master itself (TIOCGPTPEER) and must be on a devpts (*fs_type*: fstatfs): whatever the
    image put at /dev/pts, nothing else can stand in for the terminal (runc's
    CVE-2025-52565 was a /dev/console bound from a path). Both fds closed on exec."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        (number,) = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if fs_type(slave) != DEVPTS_SUPER_MAGIC:
            os.close(slave)
            raise ContainerError("process.terminal: /dev/ptmx in the container is not a "
                                 "devpts multiplexer")
        name = f"/dev/pts/{number}"
        if size is not None:
            fcntl.ioctl(slave, TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        with socket.socket(fileno=console_fd) as sock:
            socket.send_fds(sock, [name.encode()], [master])
    finally:
        os.close(master)
    return slave, name


def become_stdio(slave: int) -> None:
    """The terminal as stdin, stdout, stderr and the controlling terminal (the caller has
    its own session already)."""
    for target in range(3):
        os.dup2(slave, target)
    fcntl.ioctl(0, TIOCSCTTY, 0)
    os.close(slave)
