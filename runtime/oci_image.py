"""Reading an OCI image layout and unpacking its layers into overlayfs lower directories.

Each layer is unpacked once into its own directory, named by its digest; OCI whiteouts
become overlayfs ones (``.wh.NAME`` → a 0/0 character device, ``.wh..wh..opq`` → the
``trusted.overlay.opaque`` xattr), so the directories stack as ``lowerdir=top:…:bottom``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ContainerError

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": "r|",
    "application/vnd.oci.image.layer.v1.tar+gzip": "r|gz",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class ImageManifest:
    layout: Path
    digest: str
    layers: list[dict]
    annotations: dict[str, str]
    config: dict

    def blob(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.layout / "blobs" / algorithm / hexdigest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ContainerError(f"OCI layout: {path} missing") from exc
    except ValueError as exc:
        raise ContainerError(f"OCI layout: {path} is not valid JSON: {exc}") from exc


def read_manifest(layout: Path, ref: str | None = None) -> ImageManifest:
    """The image manifest of *layout* (the one named *ref*, or the only one)."""
    index = _read_json(layout / "index.json")
    manifests = [m for m in index.get("manifests", []) if m.get("mediaType") == MEDIA_MANIFEST]
    if ref is not None:
        manifests = [m for m in manifests
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
    if len(manifests) != 1:
        raise ContainerError(f"OCI layout {layout}: {len(manifests)} manifests match, need one")
    digest = manifests[0]["digest"]
    path = layout / "blobs" / Path(*digest.split(":", 1))
    manifest = _read_json(path)
    layout_manifest = ImageManifest(layout, digest, manifest.get("layers", []),
                                    manifest.get("annotations", {}), {})
    config = _read_json(layout_manifest.blob(manifest["config"]["digest"]))
    return ImageManifest(layout, digest, layout_manifest.layers, layout_manifest.annotations,
                         config)


def _inside(root: Path, name: str) -> Path:
    target = Path(os.path.normpath(root / name.lstrip("/")))
    parent = Path(os.path.realpath(target.parent))
    if target != root and not parent.is_relative_to(root):
        raise ContainerError(f"layer entry {name!r} points outside the layer")
    return target


def _unpack_layer(blob: Path, mode: str, dest: Path) -> None:
    with blob.open("rb") as raw, tarfile.open(fileobj=raw, mode=mode) as tar:
        for member in tar:
            target = _inside(dest, member.name)
            base = target.name
            if base == OPAQUE:
                os.setxattr(target.parent, "trusted.overlay.opaque", b"y")
            elif base.startswith(WHITEOUT):
                os.mknod(target.parent / base[len(WHITEOUT):], 0o600 | 0o020000, os.makedev(0, 0))
            else:
                if member.islnk():
                    _inside(dest, member.linkname)
                tar.extract(member, dest, numeric_owner=True, filter="fully_trusted")


def unpack_layers(manifest: ImageManifest, store: Path) -> list[Path]:
    """Unpack each layer once under *store*; return the lower dirs, top layer first."""
    lowers = []
    for layer in manifest.layers:
        mode = LAYER_TYPES.get(layer.get("mediaType", ""))
        if mode is None:
            raise ContainerError(f"unsupported layer media type {layer.get('mediaType')!r}")
        hexdigest = layer["digest"].split(":", 1)[1]
        dest = store / hexdigest
        if not dest.is_dir():  # renamed into place only once complete
            blob = manifest.blob(layer["digest"])
            _check_blob(blob, layer["digest"])
            partial = store / f"{hexdigest}.partial.{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            try:
                _unpack_layer(blob, mode, partial.resolve())
                partial.rename(dest)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        lowers.append(dest)
    return lowers[::-1]


def _check_blob(blob: Path, digest: str) -> None:
    try:
        with blob.open("rb") as handle:
            actual = "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError as exc:
        raise ContainerError(f"OCI layout: blob {digest} missing") from exc
    if actual != digest:
        raise ContainerError(f"OCI layout: blob {digest} is corrupt (content is {actual})")
