"""The VM's root disk: a raw ext4 image filled from the rootfs directory by ``mkfs.ext4 -d``
(no loop mount, so it works in containers and CI sandboxes), sparse, with room to spare for
the workloads' files. The volume UUID is derived from the rootfs digest."""

from __future__ import annotations

import uuid
from pathlib import Path

from image.external import require_tool, run_tool

LABEL = "vmvc-root"


def disk_size(content_bytes: int, entries: int, free_bytes: int) -> int:
    """Bytes for the image: content, per-inode and metadata overhead, then *free_bytes*."""
    overhead = entries * 4096 + content_bytes // 10 + (64 << 20)
    size = content_bytes + overhead + free_bytes
    return -(-size // (1 << 20)) << 20  # whole MiB


def make_ext4(rootfs: Path, out: Path, size: int, rootfs_digest: str) -> None:
    """Create *out* as an ext4 file system of *size* bytes holding the tree at *rootfs*."""
    require_tool("mkfs.ext4", "e2fsprogs")
    volume = uuid.UUID(hex=rootfs_digest.removeprefix("sha256:")[:32])
    run_tool(
        ["mkfs.ext4", "-q", "-F", "-d", rootfs, "-L", LABEL, "-U", str(volume),
         "-E", f"root_owner=0:0,hash_seed={volume}", out, f"{size // 1024}k"],
        "mkfs.ext4 of the VM disk", space_check=out.parent,
    )
