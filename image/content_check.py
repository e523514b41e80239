"""Reading the rootfs back out of each artifact and digesting it, with no mount.

This is the proof that the container and the VM get the same bits: the OCI layout is
unpacked the way the runtime unpacks it; the ext4 image is read with debugfs (``rdump``
for contents, ``ls -p`` for the modes and owners that ``rdump`` does not keep exactly).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from image.digest import RECORD_DIR, rootfs_digest
from image.errors import ImageError
from image.external import require_tool, run_tool
from runtime.errors import ContainerError
from runtime.oci_image import read_manifest, unpack_layers

_LS_ENTRY = re.compile(r"^/(\d+)/(\d+)/(\d+)/(\d+)/(.*)/(\d*)/$")


def digest_of_oci_layout(layout: Path, scratch: Path) -> str:
    """Unpack the single-layer layout into *scratch* and digest the tree."""
    try:
        manifest = read_manifest(layout)
        if len(manifest.layers) != 1:
            raise ImageError(f"{layout}: {len(manifest.layers)} layers; vmvc images have one")
        (lower,) = unpack_layers(manifest, scratch)
    except ContainerError as exc:
        raise ImageError(str(exc)) from exc
    return rootfs_digest(lower).digest


def _ls_commands(tree: Path) -> str:
    dirs = ["/", *["/" + str(Path(d).relative_to(tree)) for d, _, _ in os.walk(tree)][1:]]
    return "".join(f'ls -p "{d}"\n' for d in dirs)


def _fix_metadata(tree: Path, listing: str) -> None:
    """Apply the exact modes and owners from a debugfs ``ls -p`` listing to *tree*."""
    current = None
    for line in listing.splitlines():
        if line.startswith("debugfs: ls -p "):
            current = line.removeprefix("debugfs: ls -p ").strip('"')
            continue
        match = _LS_ENTRY.match(line)
        if current is None or match is None or match.group(5) in (".", ".."):
            continue
        mode, uid, gid = int(match.group(2), 8), int(match.group(3)), int(match.group(4))
        path = tree / current.lstrip("/") / match.group(5)
        if not os.path.lexists(path):
            continue  # special files rdump does not make: outside the digest anyway
        os.lchown(path, uid, gid)
        if not os.path.islink(path):
            os.chmod(path, mode & 0o7777)


def digest_of_ext4(disk: Path, scratch: Path) -> str:
    """Copy the file system out of *disk* into *scratch* with debugfs and digest it."""
    require_tool("debugfs", "e2fsprogs")
    scratch.mkdir(parents=True, exist_ok=True)
    run_tool(["debugfs", "-R", f"rdump / {scratch}", disk], "debugfs rdump", space_check=scratch)
    commands = scratch.parent / (scratch.name + ".debugfs")
    commands.write_text(_ls_commands(scratch))
    try:
        listing = run_tool(["debugfs", "-f", commands, disk], "debugfs ls")
    finally:
        commands.unlink()
    _fix_metadata(scratch, listing)
    return rootfs_digest(scratch).digest


def recorded_digest_of_ext4(disk: Path) -> str:
    """The digest the disk records about itself in /.vmvc/rootfs.json."""
    text = run_tool(["debugfs", "-R", f"cat /{RECORD_DIR}/rootfs.json", disk], "debugfs cat")
    try:
        return json.loads(text)["digest"]
    except (ValueError, KeyError) as exc:
        raise ImageError(f"{disk} holds no readable /{RECORD_DIR}/rootfs.json") from exc
