"""Attacks by a crafted root filesystem (issue 11, items 1 and 8, and a bind's locked flags
from item 9): each runs for real against vmvc-runtime, runc and crun, and reads its
evidence (file system types, access(2) checks, mount flags) without writing host state."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.linux import Linux
from runtime.spec import default_spec
from tests.oci_runtime import PEERS, OciRuntime, make_config
from tests.security import facts, is_ours, run_bundle

PROBE_PROC = r"""
echo proc=$(stat -fc %T /proc)
echo moved=$(stat -fc %T /x/etc/fp)
[ -w /x/etc/fp/sys/kernel/core_pattern ] && echo core_pattern=writable
[ -w /proc/sys/kernel/core_pattern ] && echo proc_core_pattern=writable
echo done=1
"""


def test_procfs_cannot_be_moved_by_an_image_symlink(peer_runtime: OciRuntime,
                                                   crafted_rootfs: Path, tmp_path: Path) -> None:
    """Item 1: /dev/shm -> /x/y/z and /proc -> /dev/shm/../../etc/fp. Resolved before the
    /dev tmpfs hides the symlink, procfs lands at /x/etc/fp, unmasked and writable."""
    root = crafted_rootfs
    for directory in ("x/y/z", "x/etc/fp", "etc/fp"):
        (root / directory).mkdir(parents=True)
    (root / "dev/shm").symlink_to("/x/y/z")
    (root / "proc").rmdir()
    (root / "proc").symlink_to("/dev/shm/../../etc/fp")
    proc = run_bundle(peer_runtime, make_config(root, ["/bin/sh", "-c", PROBE_PROC]),
                      tmp_path / "bundle")
    if is_ours(peer_runtime):  # refused, as runc refuses it, and the error says where
        assert proc.returncode != 0 and "done=1" not in proc.stdout
        assert "/proc" in proc.stderr and "symlink" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    seen = facts(proc.stdout)
    assert seen.get("moved") != "proc", proc.stdout  # no procfs away from /proc
    assert "core_pattern" not in seen and "proc_core_pattern" not in seen
    if proc.returncode == 0:
        assert seen["proc"] == "proc"


def test_sysfs_cannot_be_mounted_through_an_image_symlink(peer_runtime: OciRuntime,
                                                          crafted_rootfs: Path,
                                                          tmp_path: Path) -> None:
    """The same for sysfs: its masks (/sys/firmware) must land on the sysfs itself."""
    root = crafted_rootfs
    (root / "elsewhere").mkdir()
    (root / "sys").rmdir()
    (root / "sys").symlink_to("/elsewhere")
    probe = "echo sys=$(stat -fc %T /sys); echo elsewhere=$(stat -fc %T /elsewhere)"
    proc = run_bundle(peer_runtime, make_config(root, ["/bin/sh", "-c", probe]),
                      tmp_path / "bundle")
    if is_ours(peer_runtime):
        assert proc.returncode != 0 and "/sys" in proc.stderr, proc.stderr
    if proc.returncode == 0:  # a peer that follows the link masks what it mounted
        assert facts(proc.stdout)["elsewhere"] in ("sysfs", "ext2/ext3", "tmpfs")


def test_proc_after_pivot_must_be_procfs(tmp_path: Path) -> None:
    """The check behind item 1, on its own: a /proc that is a plain directory is refused
    when the spec mounted proc there, and reported absent otherwise."""
    from runtime.config import ContainerError, parse_config
    from runtime.mounts import check_proc

    (tmp_path / "proc").mkdir()
    root_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        spec_mounts = parse_config({**default_spec(["/bin/true"]),
                                    "root": {"path": "/"}}).mounts
        with pytest.raises(ContainerError, match="not the procfs"):
            check_proc(Linux(), root_fd, spec_mounts)
        assert check_proc(Linux(), root_fd, []) is False
        real = os.open("/", os.O_PATH | os.O_DIRECTORY)
        try:
            assert check_proc(Linux(), real, spec_mounts) is True  # the host's own /proc
        finally:
            os.close(real)
    finally:
        os.close(root_fd)


def _bind_options_seen(runtime: OciRuntime, rootfs: Path, tmp_path: Path,
                       source_flags: str, bind_options: list[str]) -> list[str]:
    """The mount options the container sees on /mnt, a bind (with *bind_options*) of a
    tmpfs mounted on the host with *source_flags*."""
    source = tmp_path / "bind-source"
    source.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"{source_flags},size=1m", "vmvc-sec",
                    source], check=True)
    try:
        config = make_config(rootfs, ["/bin/sh", "-c", "grep ' /mnt ' /proc/self/mountinfo"])
        config["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(source),
                                 "options": bind_options})
        proc = run_bundle(runtime, config, tmp_path / "bundle")
    finally:
        subprocess.run(["umount", source], check=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[5].split(",")


def test_a_bind_made_read_only_keeps_its_sources_nosuid(peer_runtime: OciRuntime,
                                                        crafted_rootfs: Path,
                                                        tmp_path: Path) -> None:
    """Item 9: options ["bind", "ro"] from a nosuid,nodev source. The ro remount must not
    clear nosuid/nodev (a setuid file there would become setuid in the container)."""
    options = _bind_options_seen(peer_runtime, crafted_rootfs, tmp_path, "nosuid,nodev",
                                 ["bind", "ro"])
    if not is_ours(peer_runtime):  # Debian's runc 1.1.5 and crun 1.8 clear them (runc 1.2
        assert "ro" in options and "nosuid" not in options, options  # keeps them)
        return
    assert "ro" in options and "nosuid" in options and "nodev" in options, options


def test_a_bind_can_clear_nosuid_when_asked(crafted_rootfs: Path, tmp_path: Path) -> None:
    """The flags are kept unless the options clear them ("suid"), as runc's ClearedFlags."""
    ours = OciRuntime(tmp_path / "state", PEERS["vmvc-runtime"])
    options = _bind_options_seen(ours, crafted_rootfs, tmp_path, "nosuid", ["bind", "ro", "suid"])
    assert "ro" in options and "nosuid" not in options, options


def test_nothing_is_mounted_over_procs_files(peer_runtime: OciRuntime, busybox_rootfs: Path,
                                             tmp_path: Path) -> None:
    """runc's rule, ours too: a mount inside /proc (here a file over cap_last_cap, which
    the runtime itself once read there) is refused; lxcfs's files stay allowed."""
    fake = tmp_path / "fake"
    fake.write_text("-1\n")
    config = make_config(busybox_rootfs, ["/bin/cat", "/proc/sys/kernel/cap_last_cap"])
    config["mounts"].insert(1, {"destination": "/proc/sys/kernel/cap_last_cap", "type": "bind",
                                "source": str(fake), "options": ["bind", "ro"]})
    proc = run_bundle(peer_runtime, config, tmp_path / "bundle")
    if peer_runtime.binary.endswith("/crun"):  # crun 1.8 mounts it
        assert proc.stdout == "-1\n"
        return
    assert proc.returncode != 0 and "inside /proc" in proc.stderr, proc.stderr
    config["mounts"][1]["destination"] = "/proc/uptime"
    config["process"]["args"] = ["/bin/cat", "/proc/uptime"]
    proc = run_bundle(peer_runtime, config, tmp_path / "bundle2")
    assert proc.returncode == 0 and proc.stdout == "-1\n", proc.stderr
