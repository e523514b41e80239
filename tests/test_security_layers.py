"""Issue 11, item 9: unpacking an image's layers is bounded in bytes and entries, so a
crafted layer (a tar bomb) cannot fill the host's disk or its inodes.

Each layer is small on disk: a sparse file that declares a terabyte (refused under the
default bound), a gzip of zeros, many empty entries (refused under a bound the test lowers
through the environment, as an operator would raise it for a huge image). The runtime's CLI
must refuse with one line naming the layer, and leave no layer directory, no container.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from runtime.container import IMAGE_ANNOTATION
from runtime.oci_image import MEDIA_MANIFEST
from tests.oci_runtime import BUILTIN, OciRuntime, make_config, new_id, write_bundle

pytestmark = pytest.mark.skipif(not BUILTIN, reason="runc and crun take a rootfs, not an OCI "
                                "image: unpacking layers is vmvc-runtime's")
TAR, TAR_GZ = "application/vnd.oci.image.layer.v1.tar", \
    "application/vnd.oci.image.layer.v1.tar+gzip"


def _put(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(root: Path, layer: bytes, media_type: str) -> tuple[Path, str]:
    """An OCI image layout of one layer; returns it and the layer's digest."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    layer_ref = {"mediaType": media_type, **_put(blobs, layer)}
    config = {"architecture": "amd64", "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": []}}
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "layers": [layer_ref],
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           **_put(blobs, json.dumps(config).encode())}}
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": MEDIA_MANIFEST, **_put(blobs, json.dumps(manifest).encode())}]}
    (root / "index.json").write_text(json.dumps(index))
    return root, layer_ref["digest"]


def _sparse_terabyte(tmp_path: Path) -> bytes:
    """GNU tar's sparse entry for a 1 TiB file of one hole: a few KiB of tar."""
    work = tmp_path / "sparse"
    work.mkdir()
    with open(work / "huge", "wb") as handle:
        handle.truncate(1 << 40)
    layer = tmp_path / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(layer), "-C", str(work), "huge"],
                   check=True, timeout=60)
    (work / "huge").unlink()
    return layer.read_bytes()


def _zeros_gz(size: int) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, \
            tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return buffer.getvalue()


def _many_entries(count: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO())
    return buffer.getvalue()


CASES = {  # name → (layer, media type, environment, the bound the error names)
    "sparse-terabyte": (_sparse_terabyte, TAR, {}, "VMVC_LAYER_MAX_BYTES"),
    "gzip-of-zeros": (lambda _: _zeros_gz(32 << 20), TAR_GZ,
                      {"VMVC_LAYER_MAX_BYTES": str(8 << 20)}, "VMVC_LAYER_MAX_BYTES"),
    "many-entries": (lambda _: _many_entries(2000), TAR,
                     {"VMVC_LAYER_MAX_ENTRIES": "1000"}, "VMVC_LAYER_MAX_ENTRIES"),
}


@pytest.mark.parametrize("case", CASES)
def test_tar_bomb_layer_is_refused_and_nothing_stays(case: str, busybox_rootfs: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    make_layer, media_type, env, bound = CASES[case]
    layout, digest = _layout(tmp_path / "oci", make_layer(tmp_path), media_type)
    data = tmp_path / "data"
    monkeypatch.setenv("VMVC_RUNTIME_DATA", str(data))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = make_config(busybox_rootfs, ["/bin/true"])
    config["annotations"] = {IMAGE_ANNOTATION: str(layout)}
    runtime, cid = OciRuntime(tmp_path / "state"), new_id()
    created = runtime("create", "--bundle", str(write_bundle(tmp_path / "b", config)), cid,
                      timeout=120)
    if created.returncode == 0:
        runtime("delete", "--force", cid)
    assert created.returncode != 0, "the layer was unpacked"
    assert created.stderr.strip().count("\n") == 0, created.stderr
    assert f"layer {digest}" in created.stderr and bound in created.stderr
    layers = data / "layers"
    assert not layers.exists() or list(layers.iterdir()) == []  # no partial directory
    assert runtime("list").stdout.split("\n")[1:] in ([], [""])


def test_bad_bound_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.errors import ContainerError
    from runtime.oci_image import read_manifest, unpack_layers

    layout, _ = _layout(tmp_path / "oci", _many_entries(1), TAR)
    monkeypatch.setenv("VMVC_LAYER_MAX_BYTES", "lots")
    with pytest.raises(ContainerError, match="VMVC_LAYER_MAX_BYTES='lots': not a positive"):
        unpack_layers(read_manifest(layout), tmp_path / "layers")
