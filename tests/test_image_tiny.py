"""The tiny (busybox) image built into a private cache: artifacts, digests, cache behaviour.

Real tools throughout: apt and Debian's archive, dpkg-deb, mkfs.ext4, debugfs, umoci.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from image import cache
from image.build import ImageArtifacts, build_image
from image.content_check import (
    digest_of_ext4,
    digest_of_oci_layout,
    recorded_digest_of_ext4,
)
from image.oci_layout import DIGEST_ANNOTATION
from runtime.oci_image import read_manifest


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def tiny(cache_dir: Path) -> ImageArtifacts:
    return build_image("tiny", cache_dir)


@pytest.mark.slow
def test_contract_lists_existing_artifacts(tiny: ImageArtifacts) -> None:
    contract = tiny.contract()
    assert {"digest", "oci_layout", "disk", "kernel", "initramfs"} <= contract.keys()
    assert contract["digest"].startswith("sha256:") and len(contract["digest"]) == 71
    for key in ("oci_layout", "disk", "kernel", "initramfs"):
        assert Path(contract[key]).exists(), key
    manifest = json.loads(tiny.manifest.read_text())
    assert manifest["digest"] == tiny.digest
    assert manifest["kernel_version"].endswith("-cloud-amd64")
    assert "virtio_blk.ko" in manifest["guest_modules"]


@pytest.mark.slow
def test_same_digest_from_oci_layers_and_from_ext4(tiny: ImageArtifacts, tmp_path: Path) -> None:
    from_oci = digest_of_oci_layout(tiny.oci_layout, tmp_path / "layers")
    from_ext4 = digest_of_ext4(tiny.disk, tmp_path / "ext4")
    assert from_oci == from_ext4 == tiny.digest
    assert recorded_digest_of_ext4(tiny.disk) == tiny.digest
    image = read_manifest(tiny.oci_layout)
    assert image.annotations[DIGEST_ANNOTATION] == tiny.digest
    assert image.config["config"]["Labels"][DIGEST_ANNOTATION] == tiny.digest


@pytest.mark.slow
def test_layout_is_read_by_umoci(tiny: ImageArtifacts, tmp_path: Path) -> None:
    """A third-party image-spec implementation unpacks the layout to the same bits."""
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{tiny.oci_layout}:vmvc-tiny", bundle],
                   check=True, capture_output=True)
    from image.digest import rootfs_digest

    assert rootfs_digest(bundle / "rootfs").digest == tiny.digest
    assert (bundle / "rootfs/usr/local/sbin/vmvc-init").stat().st_mode & 0o111


@pytest.mark.slow
def test_second_build_is_a_cache_hit(tiny: ImageArtifacts, cache_dir: Path) -> None:
    again = build_image("tiny", cache_dir)
    assert again.cached and again.entry == tiny.entry and again.digest == tiny.digest


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _layer_blob(image: ImageArtifacts) -> Path:
    return read_manifest(image.oci_layout).blob(read_manifest(image.oci_layout).layers[0]["digest"])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip-layer-byte", "flip-disk-byte", "truncate-kernel",
                                    "drop-manifest", "delete-initramfs"])
def test_damaged_entry_is_detected_and_rebuilt(tiny: ImageArtifacts, cache_dir: Path,
                                               damage: str) -> None:
    if damage == "flip-layer-byte":
        _flip_byte(_layer_blob(tiny), 600)  # same size, same mtime class: content differs
    elif damage == "flip-disk-byte":
        _flip_byte(tiny.disk, 1024 + 100)  # inside the ext4 superblock
    elif damage == "truncate-kernel":
        os.truncate(tiny.kernel, 4096)
    elif damage == "drop-manifest":
        tiny.manifest.unlink()  # what a build killed before its commit would look like
    else:
        tiny.initramfs.unlink()
    assert cache.corruption(tiny.entry) is not None
    rebuilt = build_image("tiny", cache_dir)
    assert not rebuilt.cached
    assert rebuilt.entry == tiny.entry and rebuilt.digest == tiny.digest
    assert cache.corruption(rebuilt.entry) is None


@pytest.mark.slow
def test_scratch_of_a_dead_build_is_removed(tiny: ImageArtifacts, cache_dir: Path) -> None:
    stale = cache_dir / "tmp" / f"{tiny.entry.name}.{_dead_pid()}"
    (stale / "rootfs").mkdir(parents=True)
    build_image("tiny", cache_dir)
    assert not stale.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_build_leaves_only_the_entry(tiny: ImageArtifacts, cache_dir: Path) -> None:
    assert list((cache_dir / "tmp").iterdir()) == []
    assert sorted(p.name for p in tiny.entry.iterdir()) == [
        "artifacts.json", "disk.ext4", "initramfs.img", "oci", "vmlinuz"]


@pytest.mark.slow
def test_prune_removes_only_superseded_entries(tiny: ImageArtifacts, cache_dir: Path) -> None:
    older = tiny.entry.with_name("tiny-0000older0000")
    shutil.copytree(tiny.entry, older)
    os.utime(older / cache.MANIFEST, (1, 1))  # built long ago, same profile and packages
    proc = subprocess.run([sys.executable, "-m", "bench", "image", "prune", "--cache-dir",
                           str(cache_dir)], capture_output=True, text=True, check=True)
    assert "removed tiny-0000older0000" in proc.stdout
    assert not older.exists()
    assert cache.corruption(tiny.entry) is None


@pytest.mark.slow
def test_offline_refresh_falls_back_to_the_cached_image(tiny: ImageArtifacts,
                                                        cache_dir: Path) -> None:
    """In a network namespace of its own (no route anywhere), a forced index refresh fails:
    the build says so in one line and still returns the valid cached image."""
    proc = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "bench", "image",
                           "build", "--profile", "tiny", "--refresh", "--json", "--cache-dir",
                           str(cache_dir)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["digest"] == tiny.digest
    assert "cannot reach the Debian mirror" in proc.stderr
    assert "using the package lists of" in proc.stderr
    assert f"image {tiny.entry.name}: cached" in proc.stderr
