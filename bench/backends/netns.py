"""A network namespace on the suite's bridge, made by the harness for a runtime that has no
network of its own (runc, crun): as CNI does for podman, the namespace is made first (a
named one, /run/netns/vmvc-<id>), a veth pair joins it to vmvc0 with an address leased from
the bridge's host-wide registry (runtime.network.Leases), and the runtime joins it by path
(config.json: linux.namespaces network with a path). Netlink through pyroute2.

The same fence holds as for the built-in runtime's bridge mode: vmvc0's nftables table (the
host answers only connections it opened, nothing is routed), an isolated bridge port (no
instance reaches another), no default route inside.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from bench.errors import VmvcError
from runtime import network
from runtime.errors import ContainerError
from runtime.linux import MNT_DETACH, Linux

PREFIX = "vmvc-"  # a namespace name: the prefix and the instance's id
NETNS_DIR = "/run/netns"  # where iproute2 and pyroute2 keep named namespaces


@dataclass(frozen=True)
class BridgedNetns:
    name: str
    address: str

    @property
    def path(self) -> str:
        return f"{NETNS_DIR}/{self.name}"


def make(instance_id: str, bridged: bool = True) -> BridgedNetns:
    """A new named namespace with ``lo`` up and, *bridged*, ``eth0`` with its address on
    vmvc0 (else only ``lo``: a network of the instance's own that the host side reaches by
    joining it, as bare's services do); nothing of it is left if a step fails."""
    from pyroute2 import IPRoute, NetNS, netns

    name = f"{PREFIX}{instance_id}"
    try:
        netns.create(name)
    except OSError as exc:
        raise VmvcError(f"network namespace {name}: {exc.strerror or exc}") from exc
    made = BridgedNetns(name, "")
    try:
        if bridged:
            made = BridgedNetns(name, network.lease_address(f"network namespace {name}",
                                                            f"{NETNS_DIR}/{name}"))
            host = network.host_veth_name(name)
            with IPRoute() as ipr:
                ipr.link("add", ifname=host, kind="veth", peer={"ifname": "eth0",
                                                                 "net_ns_fd": name})
                network.attach(ipr, ipr.link_lookup(ifname=host)[0],
                               ipr.link_lookup(ifname=network.BRIDGE)[0])
        with NetNS(name) as inside:
            inside.link("set", index=inside.link_lookup(ifname="lo")[0], state="up")
            if bridged:
                eth0 = inside.link_lookup(ifname="eth0")[0]
                inside.addr("add", index=eth0, address=made.address,
                            prefixlen=network.SUBNET.prefixlen)
                inside.link("set", index=eth0, state="up")
        return made
    except BaseException as exc:
        remove(made)
        if isinstance(exc, ContainerError | OSError | IndexError) or \
                type(exc).__name__ == "NetlinkError":
            raise VmvcError(f"network namespace {name}: {exc}") from exc
        raise


def remove(made: BridgedNetns) -> None:
    """The namespace (its eth0 and the pair go with it), the host end if it stayed, the
    address back (the last one takes the bridge)."""
    from pyroute2 import netns

    with contextlib.suppress(OSError, FileNotFoundError):
        netns.remove(made.name)
    network.unplug(made.name)
    if made.address:
        network.release_address(made.address)
    with network.Leases():  # one at a time, against a make() in another process
        unmount_if_empty()


def unmount_if_empty() -> None:
    """The first named namespace made /run/netns a mount of its own (as ``ip netns add``
    does: a shared bind onto itself); once no namespace of anyone's is left there, it goes,
    so no mount outlives the instances that needed it."""
    try:
        if os.listdir(NETNS_DIR) or not mounted(NETNS_DIR):
            return
    except FileNotFoundError:
        return
    with contextlib.suppress(OSError):
        Linux().umount2(NETNS_DIR, MNT_DETACH)


def mounted(path: str) -> bool:
    """A mount point, bind mounts of the same file system onto themselves included
    (os.path.ismount compares devices, so it misses those)."""
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == path for line in mounts)


def leftovers() -> list[str]:
    """Names of the suite's namespaces still there (a killed run's)."""
    from pyroute2 import netns

    return sorted(n for n in netns.listnetns() if n.startswith(PREFIX))
