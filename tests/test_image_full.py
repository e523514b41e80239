"""The full Debian image (built by make setup into the default cache): the same bits in the
OCI layout and in the VM disk, with every workload tool in them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from image.build import ImageArtifacts, build_image
from image.content_check import (
    digest_of_ext4,
    digest_of_oci_layout,
    recorded_digest_of_ext4,
)
from image.rootfs import WORKLOAD_PACKAGES
from runtime.oci_image import read_manifest, unpack_layers

TOOLS = ("usr/bin/busybox", "usr/bin/sysbench", "usr/bin/fio", "usr/bin/stress-ng",
         "usr/bin/iperf3", "usr/bin/redis-server", "usr/bin/redis-cli",
         "usr/bin/redis-benchmark", "usr/bin/sockperf", "usr/sbin/nginx", "usr/bin/wrk",
         "usr/sbin/qemu-ga", "usr/bin/crun", "usr/local/sbin/vmvc-init")


def test_cached_build_returns_the_same_entry(full_image: ImageArtifacts) -> None:
    again = build_image("full")
    assert again.cached and again.entry == full_image.entry


@pytest.mark.slow
def test_container_and_vm_get_the_same_bits(full_image: ImageArtifacts, tmp_path: Path) -> None:
    from_oci = digest_of_oci_layout(full_image.oci_layout, tmp_path / "layers")
    from_ext4 = digest_of_ext4(full_image.disk, tmp_path / "ext4")
    assert from_oci == from_ext4 == full_image.digest
    assert recorded_digest_of_ext4(full_image.disk) == full_image.digest


@pytest.mark.slow
def test_workload_tools_are_in_the_image(full_image: ImageArtifacts, tmp_path: Path) -> None:
    (lower,) = unpack_layers(read_manifest(full_image.oci_layout), tmp_path)
    for tool in TOOLS:
        assert os.access(lower / tool, os.X_OK), tool
    assert not list((lower / "dev").iterdir())  # each medium makes its own /dev
    assert (lower / "etc/hostname").read_text() == "vmvc\n"
    assert not (lower / "etc/resolv.conf").exists()  # nothing of the build host leaks in


def test_manifest_records_the_installed_versions(full_image: ImageArtifacts) -> None:
    manifest = json.loads(full_image.manifest.read_text())
    installed = manifest["installed_packages"]
    assert installed == manifest["inputs"]["versions"]  # the cache key says what is inside
    for package in WORKLOAD_PACKAGES:
        assert package in installed
    assert manifest["inputs"]["kernel"]["package"].startswith("linux-image-")
    assert manifest["disk_size_bytes"] > manifest["rootfs_content_bytes"] + (1 << 30)
