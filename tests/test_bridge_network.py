"""Every backend on the suite's bridge (vmvc0): the host reaches each instance at its address
(a server inside, a client on the host), each address is leased host-wide while the
instance lives, and the instance's network namespace, veth or tap and lease go with it; the
net-bridge workload gives its figure on the peers' runtimes and the VM too."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bench.backends import BackendContext, make_backend, netns
from bench.backends.bare import BareBackend
from bench.backends.base import Instance
from bench.backends.netns import NETNS_DIR, PREFIX
from bench.backends.oci_bundle import cpu_list
from bench.backends.vm import VmInstance
from bench.harness import measure
from bench.metrics.cost import service_cpus
from bench.workloads import load_workloads
from image.build import ImageArtifacts
from paths import BENCH_WORKDIR
from runtime import network

BRIDGED = ["bare-veth", "builtin", "builtin-cli", "runc", "crun", "lxc",
           pytest.param("vm", marks=pytest.mark.slow),  # a boot under TCG
           pytest.param("vm-container", marks=pytest.mark.slow)]
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
    """A page served inside, fetched from the host; the instance reaches none of the host's
    own addresses (a listener on all of them); then, as the cost metric runs them, the
    service workload rr (all its figures, the instance and the client each on CPUs of
    their own) and net-bridge's figure (iperf3 from the host) from the same instance."""
    context = context_of(full_image)
    before = (leased(), our_namespaces())
    server, _ = service_cpus()
    backend = make_backend(name, context)
    if name == "lxc" and (reason := backend.unavailable()):  # libvirt's LXC driver missing
        pytest.skip(reason)
    with backend.start(network="bridge", cpus=server) as instance:
        assert instance.address is not None and instance.client_network is None
        assert network.ipaddress.ip_address(instance.address) in network.SUBNET
        assert instance.address in leased() - before[0]
        served = instance.exec(["/bin/sh", "-c", SERVE], timeout=30)
        assert served.exit_code == 0, served.output
        assert fetch(instance.address).startswith("hello from ")
        assert reached_from(instance) == []
        rr, gbits = pinned_service(context, instance, ["rr", "net-bridge"])
        assert set(rr) == {"p50", "p99", "p999", "max"}
        assert 0 < rr["p50"] <= rr["p99"] <= rr["p999"] <= rr["max"]
        assert gbits[""] > 0.01, gbits  # iperf3 moved data; TCG's VM is the slowest
    assert (leased(), our_namespaces()) == before
    assert not Path(f"/sys/class/net/{network.BRIDGE}").exists() or before[0]


def pinned_service(context: BackendContext, instance: Instance,
                   workloads: list[str]) -> list[dict[str, float]]:
    """Each workload's figures from *instance* and a client on the host, as the cost metric
    runs them: the instance on the CPUs it was started on, the client on the last one."""
    server, client = service_cpus()
    if server is not None:
        assert cpus_of(instance) == {cpu_list(server)}
    with BareBackend(context).host_side(instance, client) as host:
        if client is not None:
            assert cpus_of(host) == {cpu_list(client)}
        return [measure.figures(instance, load_workloads()[name], "quick", host)
                for name in workloads]


def cpus_of(instance: Instance) -> set[str]:
    """The CPU lists its processes may run on: a VM's QEMU threads (the guest's own CPUs
    are the guest's), else a process started in it."""
    if isinstance(instance, VmInstance):
        tasks = Path(f"/proc/{instance.vm.qemu_pid()}/task").iterdir()
        return {_allowed((task / "status").read_text()) for task in tasks}
    status = instance.exec(["cat", "/proc/self/status"], timeout=30)
    return {_allowed(status.stdout)}


def _allowed(status: str) -> str:
    return next(line.split()[1] for line in status.splitlines()
                if line.startswith("Cpus_allowed_list:"))


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses but loopback's (the bridge's gateway among them)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET)]
    return [a for a in found if not a.startswith("127.")]


def reached_from(instance: Instance) -> list[str]:
    """Which host addresses a TCP connect from inside *instance* reached: a listener on all
    of the host's addresses, its connections accepted (and closed at once, so the client
    ends) by a thread, counted per address tried."""
    listener = socket.create_server(("0.0.0.0", 0))
    listener.settimeout(0.2)
    port, accepted, done = listener.getsockname()[1], [], threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.close()
            accepted.append(1)

    thread = threading.Thread(target=accept)
    thread.start()
    reached = []
    try:
        for address in host_addresses():
            before = len(accepted)
            instance.exec(["/bin/sh", "-c", f"busybox nc -w 2 {address} {port} </dev/null"],
                          timeout=30)
            time.sleep(0.3)  # the accepting thread's turn
            if len(accepted) > before:
                reached.append(address)
    finally:
        done.set()
        thread.join()
        listener.close()
    return reached


def test_bare_serves_on_a_loopback_of_its_own(full_image: ImageArtifacts) -> None:
    """bare's service path is the host's own (loopback), in a namespace of the instance's:
    a host server on the same port is neither in the way nor measured, nothing of the
    instance listens on the host, and its client joins it (pinned, as the instance is)."""
    context = context_of(full_image)
    before = (leased(), our_namespaces())
    squatter = socket.create_server(("127.0.0.1", 11111))  # where rr's server listens
    squatter.settimeout(0.2)
    server, _ = service_cpus()
    try:
        with BareBackend(context).start(network="bridge", cpus=server) as instance:
            assert instance.address == "127.0.0.1" and instance.client_network
            assert our_namespaces() - before[1] and leased() == before[0]
            (figures,) = pinned_service(context, instance, ["rr"])
            assert 0 < figures["p50"] <= figures["max"]
            with pytest.raises(TimeoutError):
                squatter.accept()  # rr's client never came to the host's server
            listening = Path("/proc/net/tcp").read_text()
            assert listening.count(":2B67 00000000:0000 0A") == 1  # the squatter's only
    finally:
        squatter.close()
    assert (leased(), our_namespaces()) == before


def test_the_reach_probe_sees_a_reachable_host(full_image: ImageArtifacts) -> None:
    """The probe's control: a bare instance in the host's network reaches every one of the
    host's addresses (so an empty answer from a bridged instance means unreachable)."""
    with BareBackend(context_of(full_image)).start() as instance:
        assert host_addresses() and reached_from(instance) == host_addresses()


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
