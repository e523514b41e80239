"""Reading an OCI image layout and unpacking its layers into overlayfs lower directories.

Each layer is unpacked once into its own directory, named by its digest; OCI whiteouts
become overlayfs ones (``.wh.NAME`` → a 0/0 character device, ``.wh..wh..opq`` → the
``trusted.overlay.opaque`` xattr), so the directories stack as ``lowerdir=top:…:bottom``.

An image is not trusted: the layers unpacked for one image are bounded, so that a tar bomb
(a header declaring a huge or sparse file, a gzip of zeros, millions of entries) cannot fill
the host's disk or its inodes. Past a bound the layer is refused and its partial directory
removed. For a bigger image, raise the bounds through the environment:

- ``VMVC_LAYER_MAX_BYTES``: bytes of file content (sizes as declared, holes included);
  default 8 GiB (the suite's full image unpacks to about 0.35 GB).
- ``VMVC_LAYER_MAX_ENTRIES``: tar entries (files, directories, links, whiteouts); default
  500,000 (the full image has about 10,000).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from runtime.errors import ContainerError
from runtime.storage import layer_store

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "r|",
    "application/vnd.oci.image.layer.v1.tar+gzip": "r|gz",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
LIMITS = {"VMVC_LAYER_MAX_BYTES": 8 << 30, "VMVC_LAYER_MAX_ENTRIES": 500_000}


def _limit(name: str) -> int:
    value = os.environ.get(name, "")
    if not value:
        return LIMITS[name]
    if not value.isdigit() or int(value) <= 0:
        raise ContainerError(f"{name}={value!r}: not a positive whole number")
    return int(value)


class UnpackBudget:
    """What the layers unpacked for one image may still take: bytes and entries."""

    def __init__(self) -> None:
        self.max_bytes = _limit("VMVC_LAYER_MAX_BYTES")
        self.max_entries = _limit("VMVC_LAYER_MAX_ENTRIES")
        self.bytes = self.entries = 0

    def spend(self, layer: str, entry_bytes: int) -> None:
        """Count one entry before it is written; refuse the layer past a bound."""
        self.entries += 1
        self.bytes += entry_bytes
        if self.entries > self.max_entries:
            raise ContainerError(f"layer {layer}: more than {self.max_entries} entries "
                                 "(VMVC_LAYER_MAX_ENTRIES): refused")
        if self.bytes > self.max_bytes:
            raise ContainerError(f"layer {layer}: more than {self.max_bytes} bytes of files "
                                 "(VMVC_LAYER_MAX_BYTES): refused")


class ImageManifest:
    """An image's manifest. A plain class: dataclasses (and inspect) cost ~5 ms of import
    on `vmvc-runtime create`'s path."""

    def __init__(self, layout: Path, digest: str, layers: list[dict],
                 annotations: dict[str, str], config: dict) -> None:
        self.layout, self.digest, self.layers = layout, digest, layers
        self.annotations, self.config = annotations, config

    def blob(self, digest: str) -> Path:
        return _blob_path(self.layout, digest)


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ContainerError(f"OCI layout: {path} missing") from exc
    except (OSError, ValueError) as exc:
        raise ContainerError(f"OCI layout: {path} is not readable JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ContainerError(f"OCI layout: {path} is not a JSON object")
    return value


def _blob_path(layout: Path, digest: object) -> Path:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise ContainerError(f"OCI layout {layout}: invalid digest {digest!r}")
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _read_blob_json(layout: Path, digest: object) -> dict:
    path = _blob_path(layout, digest)
    _check_blob(path, str(digest))
    return _read_json(path)


def read_manifest(layout: Path, ref: str | None = None) -> ImageManifest:
    """The image manifest of *layout* (the one named *ref*, or the only one)."""
    index = _read_json(layout / "index.json")
    manifests = [m for m in index.get("manifests", [])
                 if isinstance(m, dict) and m.get("mediaType") == MEDIA_MANIFEST]
    if ref is not None:
        manifests = [m for m in manifests
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
    if len(manifests) != 1:
        raise ContainerError(f"OCI layout {layout}: {len(manifests)} manifests match, need one")
    digest = manifests[0].get("digest")
    manifest = _read_blob_json(layout, digest)
    try:
        config = _read_blob_json(layout, manifest["config"]["digest"])
        layers = list(manifest["layers"])
    except (KeyError, TypeError) as exc:
        raise ContainerError(f"OCI layout {layout}: manifest {digest} lacks {exc}") from exc
    for layer in layers:
        _blob_path(layout, layer.get("digest") if isinstance(layer, dict) else None)
    return ImageManifest(layout, str(digest), layers, manifest.get("annotations", {}), config)


def _relative(name: str) -> str:
    """A member name as a path relative to the layer root ('/x', './x' and 'x' alike)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ContainerError(f"layer entry {name!r} points outside the layer")
    return "/".join(parts)


def _target(root: Path, name: str) -> Path:
    """Where *name* lands under *root*, refusing any path whose parents leave *root*
    (through '..' or through a symlink unpacked earlier)."""
    target = root / _relative(name)
    if not Path(os.path.realpath(target.parent)).is_relative_to(root):
        raise ContainerError(f"layer entry {name!r} points outside the layer")
    return target


def _unpack_layer(blob: Path, mode: str, dest: Path,
                  budget: UnpackBudget | None = None) -> None:
    """Unpack one layer into *dest* (absolute, resolved), translating whiteouts, within
    *budget* (a fresh one from the environment when None)."""
    import shutil
    import tarfile

    budget = budget or UnpackBudget()
    with blob.open("rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
        for member in tar:
            budget.spend(f"sha256:{blob.name}", member.size if member.isreg() else 0)
            if not _relative(member.name):
                continue  # the layer root itself
            target = _target(dest, member.name)
            base = target.name
            if base == OPAQUE:
                os.setxattr(target.parent, "trusted.overlay.opaque", b"y")
                continue
            if base.startswith(WHITEOUT):
                os.mknod(target.parent / base[len(WHITEOUT):], 0o600 | 0o020000,
                         os.makedev(0, 0))
                continue
            if member.ischr() or member.isblk():
                continue  # device nodes come from the runtime's /dev, never from an image
            safe = member.replace(name=_relative(member.name), deep=False)
            if member.islnk():  # os.link follows symlinks: the final target must be inside
                source = _target(dest, member.linkname)
                if not Path(os.path.realpath(source)).is_relative_to(dest):
                    raise ContainerError(f"layer link {member.name!r} points outside the layer")
                safe = safe.replace(linkname=_relative(member.linkname), deep=False)
            # tar semantics: an entry replaces what is there; never write through a symlink
            if os.path.islink(target) or (target.exists() and not target.is_dir()) or (
                    target.is_dir() and not member.isdir()):
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            try:
                tar.extract(safe, dest, numeric_owner=True, filter="fully_trusted")
            except (KeyError, OSError, tarfile.TarError) as exc:
                raise ContainerError(f"layer entry {member.name!r}: {exc}") from exc


def unpack_layers(manifest: ImageManifest, store: Path) -> list[Path]:
    """Unpack each layer once under *store*; return the lower dirs, top layer first.

    *store* is kept closed to host users (runtime.storage): the layers hold the image's
    setuid files."""
    layer_store(store)
    lowers = []
    budget = None  # made (and the environment read) only if a layer is unpacked
    for layer in manifest.layers:
        mode = LAYER_TYPES.get(layer.get("mediaType", ""))
        if mode is None:
            raise ContainerError(f"unsupported layer media type {layer.get('mediaType')!r}")
        hexdigest = layer["digest"].split(":", 1)[1]
        dest = store / hexdigest
        if not dest.is_dir():  # renamed into place only once complete
            import shutil  # only here: the cached path stays light

            blob = manifest.blob(layer["digest"])
            _check_blob(blob, layer["digest"])
            partial = store / f"{hexdigest}.partial.{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                budget = budget or UnpackBudget()
                _unpack_layer(blob, mode, partial.resolve(), budget)
                try:
                    partial.rename(dest)
                except OSError:
                    if not dest.is_dir():
                        raise
                    shutil.rmtree(partial)  # another process unpacked it meanwhile
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        lowers.append(dest)
    return lowers[::-1]


def _check_blob(blob: Path, digest: str) -> None:
    import hashlib

    try:
        with blob.open("rb") as handle:
            actual = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError as exc:
        raise ContainerError(f"OCI layout: blob {digest} missing") from exc
    if actual != digest:
        raise ContainerError(f"OCI layout: blob {digest} is corrupt (content is {actual})")
