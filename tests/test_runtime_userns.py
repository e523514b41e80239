"""User namespaces (an option): uid/gid mappings from the config; root inside is an
unprivileged uid outside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci_runtime import OciRuntime, make_config, new_id, write_bundle

HOST_BASE = 100000


@pytest.fixture
def world_traversable(busybox_rootfs: Path) -> Iterator[tuple[Path, Path]]:
    """A rootfs and a state root the mapped (unprivileged) root can reach."""
    work = Path(tempfile.mkdtemp(prefix="vmvc-userns-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    # cp -a, not copytree: a device node another test left in the shared rootfs's /dev is
    # copied as a node (copytree reads it: /dev/zero once filled this disk)
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(work / "rootfs")], check=True,
                   timeout=120)
    try:
        yield work / "rootfs", work / "state"
    finally:
        shutil.rmtree(work)


def test_root_inside_is_unprivileged_outside(world_traversable: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    rootfs, state = world_traversable
    oci = OciRuntime(state)
    config = make_config(rootfs, ["/bin/sleep", "30"],
                         uidMappings=[{"containerID": 0, "hostID": HOST_BASE, "size": 65536}],
                         gidMappings=[{"containerID": 0, "hostID": HOST_BASE, "size": 65536}])
    config["linux"]["namespaces"].append({"type": "user"})
    cid = new_id()
    bundle = write_bundle(tmp_path / "b", config)
    proc = oci("run", "-d", "--bundle", str(bundle), cid)
    assert proc.returncode == 0, proc.stderr
    try:
        pid = json.loads(oci("state", cid).stdout)["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
        assert uids[1:] == [str(HOST_BASE)] * 4  # root in the container, 100000 on the host
        inside = oci("exec", cid, "/bin/sh", "-c", "id -u; cat /proc/self/uid_map")
        assert inside.returncode == 0, inside.stderr
        first, mapping = inside.stdout.split("\n", 1)
        assert first == "0" and mapping.split() == ["0", str(HOST_BASE), "65536"]
    finally:
        oci("delete", "--force", cid)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
