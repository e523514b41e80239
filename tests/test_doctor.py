"""``vmvc doctor`` tells the truth about this host: checked against independent evidence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.host_checks import BACKENDS, newest_kernel
from bench.kernel_features import cgroup_layout
from paths import image_cache_dir
from vmdriver.accel import probe_kvm


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "doctor", *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def report() -> dict:
    proc = doctor("--json")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {check["name"]: check for check in report["checks"]}


def test_json_follows_the_contract(report: dict) -> None:
    assert report["accelerator"] in ("kvm", "tcg")
    for check in report["checks"]:
        assert {"name", "ok", "detail", "fix"} <= check.keys()
        assert isinstance(check["ok"], bool) and check["detail"]
        if not check["ok"]:
            assert check["fix"], f"{check['name']} failed without a fix"
    names = by_name(report)
    for expected in ("root", "cgroups", "overlayfs", "seccomp", "kvm", "libvirt", "qemu",
                     "runc", "crun", "podman", "gvisor", "image cache"):
        assert expected in names
    assert {f"namespace {n}" for n in ("pid", "net", "ipc", "mnt", "uts", "user", "cgroup")} \
        <= names.keys()


def test_kvm_verdict_matches_a_fresh_probe(report: dict) -> None:
    """The cached verdict agrees with a boot done now, uncached."""
    kernel, initramfs = newest_kernel(image_cache_dir())
    assert kernel is not None and initramfs is not None
    fresh = probe_kvm(kernel, initramfs)
    assert report["accelerator"] == fresh.accelerator
    assert by_name(report)["kvm"]["ok"] == fresh.usable


@pytest.mark.skipif(not Path("/sys/module/kvm_pvm").exists(), reason="not a PVM-only KVM host")
def test_pvm_host_reports_kvm_unusable_and_chooses_tcg(report: dict) -> None:
    kvm = by_name(report)["kvm"]
    assert report["accelerator"] == "tcg" and not kvm["ok"]
    assert "-accel kvm" in kvm["detail"]  # how it was decided: a boot, not /dev/kvm
    assert "TCG" in kvm["detail"] and "emulated" in kvm["detail"]
    assert "domain type qemu" in by_name(report)["libvirt"]["detail"]
    assert by_name(report)["libvirtd /dev/kvm hidden"]["ok"]


def _fs_type(path: str) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_kernel_feature_checks_agree_with_the_host(report: dict) -> None:
    names = by_name(report)
    assert names["root"]["ok"] == (os.geteuid() == 0)
    # independent evidence: what coreutils says /sys/fs/cgroup is
    if _fs_type("/sys/fs/cgroup") == "cgroup2fs":
        expected = "v2"
    elif Path("/sys/fs/cgroup/unified").is_dir() and \
            _fs_type("/sys/fs/cgroup/unified") == "cgroup2fs":
        expected = "hybrid"
    else:
        expected = "v1"
    assert names["cgroups"]["detail"].startswith(expected)
    assert names["overlayfs"]["ok"] and names["seccomp"]["ok"]  # both work on our machines
    status = Path("/proc/self/status").read_text()
    assert "Seccomp:" in status  # the kernel has seccomp, as the check found


def test_exit_status_follows_the_requested_backends() -> None:
    """A libvirt that cannot be reached fails the VM backends and nothing else."""
    unreachable = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    proc = doctor("--json", "--uri", unreachable, "--backends", "vm")
    libvirt = by_name(json.loads(proc.stdout))["libvirt"]
    assert not libvirt["ok"] and "/nonexistent/libvirt-sock" in libvirt["detail"]
    assert libvirt["needed_by"] == ["vm", "vm-container"]
    assert proc.returncode == 1
    assert doctor("--uri", unreachable, "--backends", "bare").returncode == 0


def test_all_backends_need_what_each_needs(report: dict) -> None:
    failing = [c for c in report["checks"] if not c["ok"] and set(c["needed_by"]) & set(BACKENDS)]
    assert doctor().returncode == (1 if failing else 0)


def test_the_engines_and_runsc_are_needed_by_their_own_backends_only(report: dict) -> None:
    checks = by_name(report)
    assert checks["podman"]["needed_by"] == ["podman"]
    assert checks["docker"]["needed_by"] == ["docker"]
    assert checks["gvisor"]["needed_by"] == ["gvisor"]


def test_unknown_backend_is_one_line() -> None:
    proc = doctor("--backends", "bare,nosuch")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "vmvc: unknown backend nosuch (choose from bare, bare-veth, builtin, builtin-cli, runc, "
        "crun, docker, podman, gvisor, lxc, vm, vm-container)"]


def test_table_shows_a_fix_for_each_failure(report: dict) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "doctor"], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "250"})
    failed = [c for c in report["checks"] if not c["ok"]]
    assert proc.stdout.count("fix: ") == len(failed)
    for check in failed:
        assert f"fix: {check['fix']}" in proc.stdout
    assert "accelerator: " in proc.stdout and "Traceback" not in proc.stderr


SAMPLES = {
    "v2": "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
    "hybrid": (
        "31 23 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755\n"
        "32 31 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
        "33 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "34 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    ),
    "v1": "33 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
}


@pytest.mark.parametrize("kind", SAMPLES)
def test_cgroup_layout_is_recognised(kind: str) -> None:
    layout = cgroup_layout(SAMPLES[kind])
    assert layout.kind == kind
    if kind != "v2":
        assert "memory" in layout.v1_controllers
    if kind == "hybrid":
        assert set(layout.v1_controllers) == {"memory", "cpu", "cpuacct"}
