"""Networking: ``none`` is loopback only (see the isolation audit); ``bridge`` plugs eth0
into the suite's own bridge, reachable from the host, with no route off the machine."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.oci_runtime import BUILTIN, make_config, new_id, write_bundle

pytestmark = pytest.mark.skipif(not BUILTIN, reason="bridge mode is vmvc-runtime's")

SERVE = ("ip -4 -o addr show eth0 > /tmp/addr; ip route > /tmp/routes; "
         "cp /tmp/addr /tmp/routes /srv/; httpd -f -p 8080 -h /srv")


def _fetch(address: str, path: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((address, 8080), timeout=2) as sock:
                sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                return sock.makefile("rb").read().decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_bridge_mode_host_reaches_containers(busybox_rootfs: Path, tmp_path: Path) -> None:
    from runtime.container import Runtime
    from runtime.network import BRIDGE

    rt = Runtime(root=tmp_path / "state", data=tmp_path / "data")
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", SERVE])
    config["mounts"] += [{"destination": d, "type": "tmpfs", "source": "tmpfs"}
                         for d in ("/tmp", "/srv")]
    devnull = os.open(os.devnull, os.O_WRONLY)
    ids = [new_id(), new_id()]
    addresses = []
    try:
        for cid in ids:
            state = rt.create(cid, write_bundle(tmp_path / cid, config), network="bridge",
                              stdio=(devnull, devnull, devnull))
            rt.start(cid)
            addresses.append(state.network["address"])
        assert len(set(addresses)) == 2
        for address in addresses:
            page = _fetch(address, "/addr")
            assert f"inet {address}/16" in page
            routes = _fetch(address, "/routes")
            assert "default" not in routes and "10.88.0.0/16 dev eth0" in routes
        assert Path(f"/sys/class/net/{BRIDGE}").exists()
    finally:
        for cid in ids:
            rt.delete(cid, force=True)
        os.close(devnull)
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()  # the last one out removes it
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("vmvc")]


def test_bridge_mode_needs_a_new_network_namespace(busybox_rootfs: Path,
                                                   tmp_path: Path) -> None:
    from runtime.container import Runtime
    from runtime.errors import ContainerError

    rt = Runtime(root=tmp_path / "state", data=tmp_path / "data")
    config = make_config(busybox_rootfs, ["/bin/true"],
                         namespaces=[{"type": t} for t in ("pid", "mount", "uts", "ipc")])
    with pytest.raises(ContainerError, match="needs a new network namespace"):
        rt.create(new_id(), write_bundle(tmp_path / "b", config), network="bridge")
    states = [p for p in (tmp_path / "state").iterdir() if not p.name.startswith(".")]
    assert states == []  # no container (the parsed-config cache may stay: it is a cache)
