"""Writing the rootfs as an OCI image layout (image-spec v1.1: oci-layout, index.json,
blobs/sha256) with one uncompressed tar layer, which the runtime unpacks into an overlayfs
lower directory. The rootfs digest goes into the manifest's annotations and the config's
labels, so a container's image says which bits it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from image.external import require_tool, run_tool

DIGEST_ANNOTATION = "org.vmvc.rootfs.digest"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _put_blob(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_layer(rootfs: Path, blobs: Path) -> dict[str, object]:
    """Tar *rootfs* into a layer blob (sorted, numeric owners, xattrs); return its descriptor."""
    require_tool("tar", "tar")
    tmp = blobs / "layer.tar.partial"
    members = sorted(os.listdir(rootfs))
    run_tool(
        ["tar", "--create", "--file", tmp, "--directory", rootfs, "--sort=name",
         "--numeric-owner", "--xattrs", "--xattrs-include=*", "--format=pax",
         "--pax-option=delete=atime,delete=ctime", "--", *members],
        "writing the OCI layer", space_check=blobs,
    )
    digest = _sha256_file(tmp)
    tmp.rename(blobs / digest)
    size = (blobs / digest).stat().st_size
    return {"mediaType": MEDIA_LAYER, "digest": f"sha256:{digest}", "size": size}


def write_oci_layout(rootfs: Path, out: Path, ref_name: str, rootfs_digest: str,
                     history: str) -> str:
    """Write the layout for *rootfs* into *out*; return the manifest digest."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer = write_layer(rootfs, blobs)
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Cmd": ["/bin/sh"], "WorkingDir": "/",
                   "Labels": {DIGEST_ANNOTATION: rootfs_digest}},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},  # uncompressed: same
        "history": [{"created": created, "created_by": history}],
    }
    config_desc = {"mediaType": MEDIA_CONFIG, **_put_blob(blobs, _json_bytes(config))}
    annotations = {DIGEST_ANNOTATION: rootfs_digest, "org.opencontainers.image.created": created}
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc,
                "layers": [layer], "annotations": annotations}
    manifest_desc = {"mediaType": MEDIA_MANIFEST, **_put_blob(blobs, _json_bytes(manifest)),
                     "annotations": {"org.opencontainers.image.ref.name": ref_name}}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}
    (out / "index.json").write_bytes(_json_bytes(index))
    (out / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    return str(manifest_desc["digest"])
