"""cgroup limits are enforced: memory (OOM kill, observed and reported), pids (fork fails),
CPU quota (a busy loop gets about half a CPU)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, OciRuntime, make_config, new_id, write_bundle


@pytest.fixture
def oci(tmp_path: Path) -> OciRuntime:
    return OciRuntime(tmp_path / "state")


def test_memory_limit_kills_and_is_reported(oci: OciRuntime, busybox_rootfs: Path,
                                            tmp_path: Path) -> None:
    limit = 32 << 20
    config = make_config(busybox_rootfs, ["/bin/sh", "-c",
                                          "dd if=/dev/zero of=/dev/null bs=128M count=1"],
                         resources={"memory": {"limit": limit, "swap": limit},
                                    "devices": [{"allow": False, "access": "rwm"}]})
    proc = oci("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert proc.returncode == 137, (proc.returncode, proc.stderr)  # SIGKILL by the OOM killer
    if BUILTIN:
        assert "killed by the OOM killer" in proc.stderr


def test_pids_limit_makes_fork_fail(oci: OciRuntime, busybox_rootfs: Path,
                                    tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait"
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", script],
                         resources={"pids": {"limit": 4},
                                    "devices": [{"allow": False, "access": "rwm"}]})
    proc = oci("run", "--bundle", str(write_bundle(tmp_path / "b", config)), new_id())
    assert "can't fork" in proc.stderr or "Resource temporarily unavailable" in proc.stderr, \
        proc.stderr


@pytest.mark.skipif(not BUILTIN, reason="reads usage through vmvc-runtime's library API")
def test_cpu_quota_of_half_a_cpu(busybox_rootfs: Path, tmp_path: Path) -> None:
    from runtime.container import Runtime

    rt = Runtime(root=tmp_path / "state", data=tmp_path / "data")
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", "while :; do :; done"],
                         resources={"cpu": {"quota": 50000, "period": 100000},
                                    "devices": [{"allow": False, "access": "rwm"}]})
    cid = new_id()
    rt.create(cid, write_bundle(tmp_path / "b", config))
    try:
        rt.start(cid)
        before, start = rt.usage(cid).cpu_ns, time.monotonic()
        time.sleep(2.0)
        used = (rt.usage(cid).cpu_ns - before) / 1e9 / (time.monotonic() - start)
    finally:
        rt.delete(cid, force=True)
    assert 0.40 <= used <= 0.60, f"busy loop got {used:.2f} CPU under a 50% quota"


@pytest.mark.skipif(not BUILTIN, reason="library API")
def test_usage_is_readable_while_running(busybox_rootfs: Path, tmp_path: Path) -> None:
    from runtime.container import Runtime

    rt = Runtime(root=tmp_path / "state", data=tmp_path / "data")
    config = make_config(busybox_rootfs, ["/bin/sleep", "30"])
    cid = new_id()
    rt.create(cid, write_bundle(tmp_path / "b", config))
    try:
        rt.start(cid)
        usage = rt.usage(cid)
        assert usage.pids_current == 1
        assert usage.memory_current > 0 and usage.memory_peak >= usage.memory_current
        assert usage.oom_kills == 0
        os.kill(rt.store.load(cid).pid, 0)
    finally:
        rt.delete(cid, force=True)
