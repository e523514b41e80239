"""Removing a directory tree safely, even one a killed tool left file systems mounted in.

mmdebstrap mounts /proc, /sys and /dev into the chroot it builds; had it been killed, a
plain recursive delete would walk into the host's /dev. So mounts below the tree are
detached first, deepest first, and the delete never crosses into another file system.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from pathlib import Path

MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below *path*, deepest first, from /proc/self/mountinfo."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def detach_mounts(path: Path) -> None:
    for point in mounts_below(path):
        if _libc.umount2(point.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot unmount {point}: {os.strerror(err)}")


def remove_tree(path: Path) -> None:
    """Delete *path* (file or tree) after detaching every mount below it; missing is fine."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        detach_mounts(path)
        shutil.rmtree(path)
    else:
        path.unlink()
