"""The guest's initramfs: static busybox, the virtio modules and an init that hands over.

Written as a newc cpio archive directly (uncompressed: it is a few MB and the kernel then
has nothing to decompress), so the /dev/console node it needs is made without mknod on the
host and the archive is byte-for-byte reproducible.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

NEWC_MAGIC = b"070701"


class CpioWriter:
    """A minimal writer of the newc ("new ASCII") cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"",
               rdev: tuple[int, int] = (0, 0)) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
        self._parts += [header, encoded, b"\0" * (-(len(header) + len(encoded)) % 4)]
        self._parts += [data, b"\0" * (-len(data) % 4)]

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        archive = b"".join(self._parts)
        return archive + b"\0" * (-len(archive) % 512)


def guest_source(name: str) -> bytes:
    """A file of the suite's guest sources (image/guest/)."""
    return resources.files("image").joinpath("guest", name).read_bytes()


def build_initramfs(busybox: bytes, modules: list[tuple[str, bytes]], out: Path,
                    on_request: Sequence[tuple[str, bytes]] = ()) -> None:
    """Write the initramfs to *out*: /init, /bin/busybox, /lib/modules/* and their order
    (the modules *on_request* are there too, loaded only when ``vmvc.load=`` names them)."""
    cpio = CpioWriter()
    for directory in ("bin", "dev", "lib", "lib/modules", "newroot", "proc", "sys"):
        cpio.directory(directory)
    cpio.char_device("dev/console", 5, 1)
    cpio.char_device("dev/null", 1, 3, 0o666)
    cpio.file("bin/busybox", busybox, 0o755)
    cpio.file("init", guest_source("initramfs-init.sh"), 0o755)
    for name, data in [*modules, *on_request]:
        cpio.file(f"lib/modules/{name}", data)
    cpio.file("lib/modules/load-order", "".join(f"{n}\n" for n, _ in modules).encode())
    out.write_bytes(cpio.finish())
