"""cgroup logic beside the real v1 tests (our hosts are hybrid): the v2 files and
conversions written into a directory laid out like cgroupfs, and path rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import cgroups
from runtime.config import Resources
from runtime.errors import ContainerError

V2_FILES = ("cgroup.procs", "memory.max", "memory.swap.max", "memory.low", "cpu.weight",
            "cpu.max", "cpuset.cpus", "cpuset.mems", "pids.max", "cgroup.subtree_control")


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory that behaves like cgroupfs for mkdir: the new cgroup comes with its files."""
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    real_mkdir = os.mkdir

    def cgroupfs_mkdir(path: str, *args: object) -> None:
        real_mkdir(path, *args)
        if str(path).startswith(str(tmp_path)):
            for name in V2_FILES:
                Path(path, name).write_text("")

    monkeypatch.setattr(os, "mkdir", cgroupfs_mkdir)
    return tmp_path


def test_v2_limits_and_conversions(fake_v2: Path) -> None:
    assert cgroups.is_unified(str(fake_v2))
    cgroup = cgroups.for_container(None, "c1", root=str(fake_v2))
    assert isinstance(cgroup, cgroups.CgroupV2)
    cgroup.create(Resources(memory_limit=64 << 20, memory_swap=96 << 20, cpu_shares=1024,
                            cpu_quota=50000, cpu_period=100000, pids_limit=0,
                            cpuset_cpus="0"))
    child = fake_v2 / "vmvc-c1"
    assert (fake_v2 / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids"
    assert (child / "memory.max").read_text() == str(64 << 20)
    assert (child / "memory.swap.max").read_text() == str(32 << 20)  # v2 counts swap alone
    assert (child / "cpu.weight").read_text() == "100"  # 1024 shares: the default weight
    assert (child / "cpu.max").read_text() == "50000 100000"
    assert (child / "pids.max").read_text() == "max"  # <= 0 means no limit
    assert (child / "cpuset.cpus").read_text() == "0"


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 100), (262144, 10000)])
def test_shares_to_weight_matches_runc(shares: int, weight: int) -> None:
    assert cgroups._shares_to_weight(shares) == weight


def test_cgroup_paths() -> None:
    assert cgroups.relative_path(None, "abc") == "vmvc-abc"
    assert cgroups.relative_path("/bench/abc", "abc") == "bench/abc"
    with pytest.raises(ContainerError, match="systemd"):
        cgroups.relative_path("system.slice:vmvc:abc", "abc")
    with pytest.raises(ContainerError, match="not a path"):
        cgroups.relative_path("/../etc", "abc")


def test_an_existing_cgroup_is_never_adopted(fake_v2: Path) -> None:
    cgroups.for_container(None, "c2", root=str(fake_v2)).create(Resources())
    again = cgroups.for_container(None, "c2", root=str(fake_v2))
    with pytest.raises(ContainerError, match="already exists"):
        again.create(Resources())
    assert not again.created  # so a failed create does not remove (or kill) what it found
