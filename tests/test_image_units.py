"""Logic beside the real builds: module order, the cpio writer, OCI whiteouts, sources."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from image.build import check_versions
from image.debian_archive import AptSource, debian_sources
from image.errors import ImageError
from image.guest_kernel import kernel_image_package, module_load_order
from image.initramfs import CpioWriter
from runtime.errors import ContainerError
from runtime.oci_image import _unpack_layer

MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko \
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko
"""


def test_modules_load_dependencies_first() -> None:
    order = [p.rsplit("/", 1)[1] for p in
             module_load_order(MODULES_DEP, ("virtio_pci", "virtio_blk", "virtio_rng"))]
    assert order == ["virtio_pci_modern_dev.ko", "virtio_ring.ko", "virtio.ko",
                     "virtio_pci.ko", "virtio_blk.ko", "virtio-rng.ko"]


def test_unknown_module_is_an_error() -> None:
    with pytest.raises(ImageError, match="no module virtio_gpu"):
        module_load_order(MODULES_DEP, ("virtio_gpu",))


def test_kernel_image_package_is_found_among_the_resolved() -> None:
    resolved = {"linux-image-cloud-amd64": "6.1.192-3", "kmod": "30",
                "linux-image-6.1.0-57-cloud-amd64": "6.1.192-3"}
    assert kernel_image_package(resolved) == "linux-image-6.1.0-57-cloud-amd64"
    with pytest.raises(ImageError, match="resolves to 0 kernel images"):
        kernel_image_package({"kmod": "30"})


def test_cpio_is_read_back_by_busybox(tmp_path: Path) -> None:
    cpio = CpioWriter()
    cpio.directory("bin")
    cpio.file("bin/hello", b"hello\n", 0o755)
    cpio.char_device("console", 5, 1)
    archive = tmp_path / "a.cpio"
    archive.write_bytes(cpio.finish())
    listing = subprocess.run(["busybox", "cpio", "-t", "-v", "-F", str(archive)],
                             capture_output=True, text=True, check=True).stdout
    assert "drwxr-xr-x" in listing and " bin/hello" in listing and "crw-------" in listing
    assert archive.stat().st_size % 512 == 0


def _layer(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A tar layer: data bytes make a file, None a directory, "->x" a symlink, "=>x" a link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(data, str):
                info.type = tarfile.SYMTYPE if data.startswith("->") else tarfile.LNKTYPE
                info.linkname = data[2:]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path, as_root: None) -> None:
    blob = tmp_path / "layer.tar"
    blob.write_bytes(_layer([("etc", None), ("etc/.wh.gone", b""), ("opt", None),
                             ("opt/.wh..wh..opq", b""), ("opt/new", b"x")]))
    dest = tmp_path / "unpacked"
    dest.mkdir()
    _unpack_layer(blob, "r|", dest.resolve())
    gone = os.lstat(dest / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dest / "opt", "trusted.overlay.opaque") == b"y"
    assert (dest / "opt/new").read_text() == "x"
    assert not (dest / "opt/.wh..wh..opq").exists()


ESCAPES = {
    "dot-dot": [("../escaped", b"x")],
    "symlink-then-file": [("link", "->{outside}"), ("link", b"x")],
    "file-through-symlinked-dir": [("dir", "->{outside_dir}"), ("dir/escaped", b"x")],
    "hard-link-to-host-file": [("stolen", "=>{outside}")],
    "hard-link-through-symlink": [("sym", "->{outside}"), ("stolen", "=>sym")],
}


@pytest.mark.parametrize("case", ESCAPES)
def test_layer_entries_cannot_escape(tmp_path: Path, case: str, as_root: None) -> None:
    outside_dir = tmp_path / "host"
    outside_dir.mkdir()
    outside = outside_dir / "secret"
    outside.write_text("host data")
    entries = [(name, data.format(outside=outside, outside_dir=outside_dir)
                if isinstance(data, str) else data) for name, data in ESCAPES[case]]
    blob = tmp_path / "evil.tar"
    blob.write_bytes(_layer(entries))
    dest = tmp_path / "unpacked"
    dest.mkdir()
    try:
        _unpack_layer(blob, "r|", dest.resolve())
    except ContainerError as exc:
        assert "outside the layer" in str(exc) or "not found" in str(exc)
    assert outside.read_text() == "host data"
    assert sorted(p.name for p in outside_dir.iterdir()) == ["secret"]
    assert not (tmp_path / "escaped").exists()
    for path in dest.rglob("*"):  # whatever was unpacked is not the host's file
        if path.is_file() and not path.is_symlink():
            assert not os.path.samefile(path, outside)


def test_absolute_names_land_inside(tmp_path: Path, as_root: None) -> None:
    blob = tmp_path / "abs.tar"
    target = tmp_path / "host-file"
    blob.write_bytes(_layer([(str(target), b"inside")]))
    dest = tmp_path / "unpacked"
    dest.mkdir()
    _unpack_layer(blob, "r|", dest.resolve())
    assert not target.exists()
    assert (dest / str(target).lstrip("/")).read_text() == "inside"


def test_symlink_replaced_by_a_file_in_a_later_entry(tmp_path: Path, as_root: None) -> None:
    blob = tmp_path / "replace.tar"
    blob.write_bytes(_layer([("a", b"first"), ("b", "->a"), ("b", b"second")]))
    dest = tmp_path / "unpacked"
    dest.mkdir()
    _unpack_layer(blob, "r|", dest.resolve())
    assert (dest / "a").read_text() == "first"
    assert not (dest / "b").is_symlink() and (dest / "b").read_text() == "second"


def test_explicit_mirror_is_used_alone() -> None:
    assert debian_sources("bookworm", "http://127.0.0.1:9/debian/") == [
        AptSource("http://127.0.0.1:9/debian", "bookworm")]
    suites = [s.suite for s in debian_sources("bookworm")]
    assert suites == ["bookworm", "bookworm-updates", "bookworm-security"]


def test_an_image_must_hold_what_its_key_says() -> None:
    check_versions({"fio": "3.33-3"}, {"fio": "3.33-3"})
    check_versions({}, {"anything": "1"})  # the tiny image resolves no packages
    with pytest.raises(ImageError, match=r"fio 3.33-3≠3.35-1, sysbench 1.0≠-"):
        check_versions({"fio": "3.33-3", "sysbench": "1.0"}, {"fio": "3.35-1"})


def test_device_nodes_in_layers_are_not_unpacked(tmp_path: Path, as_root: None) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        disk = tarfile.TarInfo("dev/sda")
        disk.type, disk.devmajor, disk.devminor = tarfile.BLKTYPE, 8, 0
        tar.addfile(disk)
    blob = tmp_path / "layer.tar"
    blob.write_bytes(buffer.getvalue())
    dest = tmp_path / "unpacked"
    dest.mkdir()
    _unpack_layer(blob, "r|", dest.resolve())
    assert not (dest / "dev/sda").exists()
