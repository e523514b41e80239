"""Issue 11, item 9: the suite's bridge vmvc0 must not hand containers the host's own
services, nor a way off the machine.

The attack runs for real, but inside a throwaway network namespace that plays the host (the
runtime's bridge, its nftables table and ip_forward=1 live there) and a second one that plays
the outside world: the real host's network is never touched. A bridged container granted
CAP_NET_ADMIN tries a "host service" listening on 0.0.0.0 through the gateway, then adds a
default route through the gateway and tries the outside and the host's other address.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from runtime.state import StateStore
from tests.oci_runtime import BUILTIN, RUNTIME, make_config, new_id, write_bundle

pytestmark = [
    pytest.mark.skipif(not BUILTIN, reason="bridge mode is vmvc-runtime's (runc and crun "
                       "have no network of their own)"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft (make setup installs it)"),
]

HOST_ADDR, OUTSIDE_ADDR = "10.99.0.1", "10.99.0.2"  # the link between "host" and "outside"
# answers every connection with its name; bounded: 60 s at most, then it exits
LISTENER = """
import socket, sys, time
s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen(8); s.settimeout(1)
print(s.getsockname()[1], flush=True)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.sendall(sys.argv[1].encode() + b"\\n"); c.close()
"""
FETCH = """
import socket, sys, time
deadline = time.monotonic() + 30
while True:
    try:
        with socket.create_connection((sys.argv[1], 8080), timeout=2) as sock:
            sock.sendall(b"GET /results HTTP/1.0\\r\\n\\r\\n")
            sys.stdout.write(sock.makefile("rb").read().decode(errors="replace")); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.2)
"""
# each try bounded by nc's 2 s connect timeout; the answers served for the host to fetch
ATTACK = """
try() {{ echo "$1=$(nc -w 2 "$2" "$3" </dev/null 2>/dev/null)"; }}
{{
try gateway 10.88.0.1 {host_port}
ip route add default via 10.88.0.1 && echo route=added
try outside {outside} {outside_port}
try host_other {host} {host_port}
}} > /srv/results 2>&1
exec httpd -f -p 8080 -h /srv
"""


class Netns:
    """A network namespace held by a sleeping process: nothing to unmount afterwards."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "300"])
        path = f"/proc/{self.holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.readlink(path) == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not make a network namespace"
            time.sleep(0.01)
        self.enter = ["nsenter", f"--net={path}", "--"]

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        proc = subprocess.run([*self.enter, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if check and proc.returncode:
            raise AssertionError(f"{argv}: {proc.stderr.strip()}")
        return proc.stdout

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _listen(netns: Netns, name: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([*netns.enter, sys.executable, "-c", LISTENER, name],
                            stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    assert ready, f"the {name} listener did not start"
    return proc, int(proc.stdout.readline())


def _runtime(netns: Netns, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """vmvc-runtime in the "host" namespace; output through files (see tests.oci_runtime)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run([*netns.enter, RUNTIME, "--root", str(root), *args],
                              stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=60,
                              check=False)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())


def _host_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                          timeout=30, check=True).stdout


@pytest.fixture
def host_and_outside():
    """("host", "outside"): linked by a veth pair, "host" forwarding, "outside" routing the
    container subnet back through "host" (so only the host's firewall can stop a reply)."""
    host, outside = Netns(), Netns()
    try:
        host.run("ip", "link", "set", "lo", "up")
        outside.run("ip", "link", "set", "lo", "up")
        host.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        host.run("ip", "link", "add", "out0", "type", "veth", "peer", "name", "in0", "netns",
                 str(outside.holder.pid))
        host.run("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", "out0")
        host.run("ip", "link", "set", "out0", "up")
        outside.run("ip", "addr", "add", f"{OUTSIDE_ADDR}/24", "dev", "in0")
        outside.run("ip", "link", "set", "in0", "up")
        outside.run("ip", "route", "add", "10.88.0.0/16", "via", HOST_ADDR)
        yield host, outside
    finally:
        host.close()
        outside.close()


def test_bridged_container_reaches_neither_host_services_nor_outside(
        busybox_rootfs: Path, tmp_path: Path, host_and_outside: tuple[Netns, Netns]) -> None:
    host, outside = host_and_outside
    real_tables, real_bridge = _host_tables(), os.path.exists("/sys/class/net/vmvc0")
    host_listener, host_port = _listen(host, "host")
    outside_listener, outside_port = _listen(outside, "outside")
    script = ATTACK.format(host_port=host_port, outside=OUTSIDE_ADDR, outside_port=outside_port,
                           host=HOST_ADDR)
    config = make_config(busybox_rootfs, ["/bin/sh", "-c", script])
    config["annotations"] = {"org.vmvc.network": "bridge"}
    for caps in config["process"]["capabilities"].values():
        caps.append("CAP_NET_ADMIN")  # the container may change its own routes
    config["mounts"].append({"destination": "/srv", "type": "tmpfs", "source": "tmpfs"})
    cid, root = new_id(), tmp_path / "state"
    bundle = write_bundle(tmp_path / "bundle", config)
    try:
        created = _runtime(host, root, "create", "--bundle", str(bundle), cid)
        assert created.returncode == 0, created.stderr
        assert _runtime(host, root, "start", cid).returncode == 0
        address = StateStore(str(root)).load(cid).network["address"]
        # the host opens the connection and the answers come back: established traffic
        # (what the harness's net-bridge workload does) still passes
        page = host.run(sys.executable, "-c", FETCH, address)
        body = page.split("\n\n", 1)[-1]  # text mode: httpd's CRLFs read as newlines
        results = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
        # CAP_NET_ADMIN: the route itself is the container's to add; what answered is not:
        # a host service on the gateway or on the host's other address, or the outside
        # through the forwarding host
        assert results == {"gateway": "", "route": "added", "outside": "", "host_other": ""}
        tables = host.run("nft", "list", "tables")
        assert "table inet vmvc" in tables
    finally:
        _runtime(host, root, "delete", "--force", cid)
        host_listener.kill()
        outside_listener.kill()
        host_listener.wait()
        outside_listener.wait()
    # the table goes with the bridge; the real host never saw either
    assert host.run("nft", "list", "tables").strip() == ""
    assert "vmvc0" not in host.run("ip", "-o", "link", "show")
    assert _host_tables() == real_tables
    assert os.path.exists("/sys/class/net/vmvc0") == real_bridge


LEFTOVER = """
from runtime import network
network._nft(network.FIREWALL)  # a run killed after loading the table, before the bridge
print(network.firewall_present())
network.remove_bridge()  # what `vmvc cleanup` and the last lease given back call
print(network.firewall_present())
"""


def test_a_table_left_without_its_bridge_is_removed(host_and_outside) -> None:
    host, _ = host_and_outside
    assert host.run(sys.executable, "-c", LEFTOVER).split() == ["True", "False"]
    assert host.run("nft", "list", "tables").strip() == ""
