"""The rootfs content digest: proof that a container and a VM run the same bits.

The digest is a SHA-256 over one line per entry of the tree, sorted by path (bytewise)::

    <kind> <mode> <uid> <gid> <payload> <path>\n

*kind* is ``d`` (directory), ``f`` (regular file) or ``l`` (symlink); *mode* the permission
bits in octal (``st_mode & 0o7777``); *payload* the SHA-256 of a file's content, a symlink's
target, or ``-`` for a directory; *path* starts with ``/``. Timestamps, xattrs and hard-link
identity are left out: they differ between an unpacked tar, an overlay and an ext4 image
without changing what a program reads. Left out as well, because each medium makes its own:
the root directory itself, everything below ``/dev``, ``/lost+found`` (made by mkfs.ext4),
special files (device nodes, FIFOs, sockets) and ``/.vmvc`` (where the digest is recorded).
The format is simple on purpose: a shell loop with ``stat`` and ``sha256sum`` reproduces it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EXCLUDED_TOP = {b"lost+found", b".vmvc"}
"""Top-level names left out of the digest (see the module docstring)."""

RECORD_DIR = ".vmvc"
"""Directory inside the rootfs where each artifact records the digest it was built from."""


@dataclass(frozen=True)
class DigestResult:
    digest: str
    entries: int
    content_bytes: int


def _file_sha256(path: bytes) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Yield (path relative to root, lstat) for every entry the digest covers."""
    stack = [b""]
    while stack:
        rel = stack.pop()
        with os.scandir(root + rel if rel else root) as it:
            for entry in it:
                child = rel + b"/" + entry.name
                if not rel and entry.name in EXCLUDED_TOP:
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    yield child, st
                    if child != b"/dev":
                        stack.append(child)
                elif (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)) and not (
                    child.startswith(b"/dev/")
                ):
                    yield child, st


def _entry_line(full: bytes, rel: bytes, st: os.stat_result) -> bytes:
    if stat.S_ISDIR(st.st_mode):
        kind, payload = b"d", b"-"
    elif stat.S_ISLNK(st.st_mode):
        kind, payload = b"l", os.readlink(full)
    else:
        kind, payload = b"f", _file_sha256(full).encode()
    head = f"{stat.S_IMODE(st.st_mode):04o} {st.st_uid} {st.st_gid} ".encode()
    return kind + b" " + head + payload + b" " + rel + b"\n"


def digest_lines(root: Path) -> Iterator[tuple[bytes, os.stat_result]]:
    """The digest's input lines for the tree at *root*, in order, with each entry's lstat."""
    base = os.fsencode(root)
    for rel, st in sorted(_walk(base)):
        yield _entry_line(base + rel, rel, st), st


def rootfs_digest(root: Path) -> DigestResult:
    """Digest the tree at *root* (see the module docstring for what it covers)."""
    if not root.is_dir():
        raise FileNotFoundError(f"rootfs {root} is not a directory")
    h = hashlib.sha256()
    entries = content = 0
    for line, st in digest_lines(root):
        h.update(line)
        entries += 1
        if stat.S_ISREG(st.st_mode):
            content += st.st_size
    return DigestResult("sha256:" + h.hexdigest(), entries, content)
