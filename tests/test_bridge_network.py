"""Every backend on the suite's bridge (vmvc0): the host reaches each instance at its address
(a server inside, a client on the host), each address is leased host-wide while the
instance lives, and the instance's network namespace, veth or tap and lease go with it; the
net-bridge workload gives its figure on the peers' runtimes and the VM too."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from bench.backends import BackendContext, make_backend, netns
from bench.backends.bare import BareBackend
from bench.backends.netns import NETNS_DIR, PREFIX
from bench.harness import measure
from bench.workloads import load_workloads
from image.build import ImageArtifacts
from paths import BENCH_WORKDIR
from runtime import network

BRIDGED = ["builtin", "builtin-cli", "runc", "crun",
           pytest.param("vm", marks=pytest.mark.slow)]  # a boot under TCG
SERVE = ("mkdir -p /tmp/www && echo \"hello from $(hostname)\" > /tmp/www/index.html && "
         "busybox httpd -p 8080 -h /tmp/www")  # httpd forks into the background


def context_of(image: ImageArtifacts) -> BackendContext:
    BENCH_WORKDIR.mkdir(parents=True, exist_ok=True)
    return BackendContext(image.oci_layout, image.disk, image.kernel, image.initramfs,
                          BENCH_WORKDIR)


def fetch(address: str, seconds: float = 20) -> str:
    """The instance's page, retried while its server comes up (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}:8080/index.html", timeout=2) as got:
                return got.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def leased() -> set[str]:
    with network.Leases() as leases:
        return set(leases.held())


def our_namespaces() -> set[str]:
    return {p.name for p in Path(NETNS_DIR).glob(f"{PREFIX}*")} \
        if Path(NETNS_DIR).is_dir() else set()


@pytest.mark.parametrize("name", BRIDGED)
def test_the_host_reaches_every_bridged_instance(name: str,
                                                 full_image: ImageArtifacts) -> None:
    """A page served inside, fetched from the host; then the net-bridge workload's figure
    (iperf3 from the host) from the same instance."""
    context = context_of(full_image)
    before = (leased(), our_namespaces())
    with make_backend(name, context).start(network="bridge") as instance:
        assert instance.address is not None
        assert network.ipaddress.ip_address(instance.address) in network.SUBNET
        assert instance.address in leased() - before[0]
        served = instance.exec(["/bin/sh", "-c", SERVE], timeout=30)
        assert served.exit_code == 0, served.output
        assert fetch(instance.address).startswith("hello from ")
        with BareBackend(context).start() as host:
            gbits = measure.cost(instance, load_workloads()["net-bridge"], "quick", host)
        assert gbits > 0.01, gbits  # iperf3 moved data; TCG's VM is the slowest
    assert (leased(), our_namespaces()) == before
    assert not Path(f"/sys/class/net/{network.BRIDGE}").exists() or before[0]


def test_two_users_never_share_an_address(tiny_image: ImageArtifacts) -> None:
    """The built-in runtime's containers and the harness's namespaces lease from one
    registry: at the same time they hold different addresses."""
    context = context_of(tiny_image)
    with make_backend("builtin", context).start(network="bridge") as one, \
            make_backend("crun", context).start(network="bridge") as two:
        assert one.address and two.address and one.address != two.address
        assert {one.address, two.address} <= leased()


def test_instances_on_the_bridge_reach_the_host_not_each_other(tiny_image: ImageArtifacts
                                                               ) -> None:
    """Every port of vmvc0 is isolated: a server in one instance answers the host and not a
    neighbour (the client's try is bounded by wget's 2 s timeout)."""
    context = context_of(tiny_image)
    with make_backend("builtin", context).start(network="bridge") as one, \
            make_backend("runc", context).start(network="bridge") as two:
        assert two.exec(["/bin/sh", "-c", SERVE], timeout=30).exit_code == 0
        assert fetch(two.address).startswith("hello from ")
        tried = one.exec(["wget", "-T", "2", "-q", "-O", "-",
                          f"http://{two.address}:8080/index.html"], timeout=30)
        assert tried.exit_code != 0 and "hello" not in tried.stdout


def test_cleanup_removes_a_killed_runs_namespace_and_lease() -> None:
    """What a harness killed between make() and remove() leaves: the namespace, its veth,
    its lease, the bridge, /run/netns's own mount; `vmvc cleanup` takes them all."""
    import subprocess
    import sys

    before = (leased(), our_namespaces(), netns.mounted(NETNS_DIR))
    made = netns.make("leftover0")
    assert made.name in our_namespaces() and made.address in leased()
    assert Path(f"/sys/class/net/{network.host_veth_name(made.name)}").exists()
    out = subprocess.run([sys.executable, "-m", "bench", "cleanup"], capture_output=True,
                         text=True, check=True).stdout
    assert f"network namespace {made.name}" in out
    assert (leased(), our_namespaces(), netns.mounted(NETNS_DIR)) == before
    assert not Path(f"/sys/class/net/{network.host_veth_name(made.name)}").exists()
