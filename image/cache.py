"""The image cache: entries keyed by their inputs, committed atomically, checked before use.

An entry is a directory ``images/<profile>-<key>/`` whose ``artifacts.json`` is written last
and lists every file with its size and content hash. A build happens in ``tmp/`` and is
renamed into place, so a killed build leaves no entry, only a scratch directory that the
next build (or ``vmvc cleanup``) removes. An entry whose files do not match its list is
reported and rebuilt, never used.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from image.errors import ImageError
from image.fs_cleanup import remove_tree
from paths import image_scratch_dir

MANIFEST = "artifacts.json"
CHUNK = 1 << 20
_ZERO = bytes(CHUNK)


def ensure_writable(cache_dir: Path) -> None:
    """Create *cache_dir* and prove a file can be written there, or fail in one line."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ImageError(f"cache dir {cache_dir} is not writable: {exc.strerror}") from exc


def content_hash(path: Path) -> str:
    """SHA-256 over the non-zero 1 MiB chunks of *path* and their offsets.

    Sparse disk images are mostly holes: this skips them (SEEK_DATA) and any all-zero
    chunk, so the hash depends on content only, not on how sparse the file is stored.
    """
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        fd = handle.fileno()
        offset = 0
        while offset < size:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA) // CHUNK * CHUNK
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole remains
                    break
                raise
            handle.seek(offset)
            chunk = handle.read(CHUNK)
            if chunk != _ZERO[: len(chunk)]:
                h.update(offset.to_bytes(8, "little") + chunk)
            offset += CHUNK
    h.update(size.to_bytes(8, "little"))
    return h.hexdigest()


def list_files(entry: Path) -> dict[str, dict[str, object]]:
    """Every file of an entry (but the manifest) with size and content hash."""
    files = {}
    for path in sorted(entry.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[str(path.relative_to(entry))] = {
                "size": path.stat().st_size, "hash": content_hash(path)}
    return files


def corruption(entry: Path) -> str | None:
    """Why *entry* cannot be used, or None when every listed file matches."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        listed = manifest["files"]
    except FileNotFoundError:
        return f"{MANIFEST} missing (half-written entry)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} unreadable: {exc}"
    for rel, expected in listed.items():
        path = entry / rel
        try:
            if path.stat().st_size != expected["size"]:
                return f"{rel} has the wrong size"
            if content_hash(path) != expected["hash"]:
                return f"{rel} content changed"
        except FileNotFoundError:
            return f"{rel} missing"
    return None


def read_manifest(entry: Path) -> dict:
    return json.loads((entry / MANIFEST).read_text())


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """One builder or pruner at a time per cache: they share the apt state, the scratch
    dir and the entries (a waiting builder then finds its image built)."""
    with open(cache_dir / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def scratch_dir(cache_dir: Path, name: str) -> Path:
    """A fresh build directory ``tmp/<name>.<pid>`` on the cache's file system."""
    tmp = image_scratch_dir(cache_dir)
    tmp.mkdir(exist_ok=True)
    path = tmp / f"{name}.{os.getpid()}"
    remove_tree(path)
    path.mkdir()
    return path


def remove_stale_scratch(cache_dir: Path) -> list[Path]:
    """Remove build directories whose builder process is gone; return them."""
    removed = []
    for path in image_scratch_dir(cache_dir).glob("*.*"):
        pid = path.suffix.lstrip(".")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_tree(path)
            removed.append(path)
    return removed


def commit(scratch: Path, entry: Path, manifest: dict) -> None:
    """Write the manifest last, then rename the scratch dir into place."""
    manifest = {**manifest, "files": list_files(scratch)}
    partial = scratch / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with partial.open() as handle:
        os.fsync(handle.fileno())
    partial.rename(scratch / MANIFEST)
    remove_tree(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(entry)
