"""Container networking: ``none`` (a fresh namespace with only ``lo``, the default) and
``bridge``: a veth pair from the container's ``eth0`` to the suite's own bridge ``vmvc0``,
with an address from one fixed test subnet. No uplink, no NAT, no default route: traffic
stays between the host and the containers the suite made. Netlink through pyroute2.

A container may still aim at the host itself (any service listening on 0.0.0.0 answers at
the gateway) or, given CAP_NET_ADMIN, add a default route through the gateway and let a
forwarding host carry it off the machine. The nftables table ``inet vmvc`` (the suite's own:
the host's firewall is not touched) closes both: from vmvc0 the host accepts only traffic of
connections it opened itself (the suite serves nothing to containers; the harness connects to
them), and nothing is forwarded from or to vmvc0. The table comes before the bridge and goes
after it, so vmvc0 never exists unfenced. Debian's ``nft`` applies it: one process, only in
bridge mode.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import subprocess

from runtime.errors import ContainerError

BRIDGE = "vmvc0"
SUBNET = ipaddress.IPv4Network("10.88.0.0/16")
GATEWAY = SUBNET.network_address + 1  # the bridge's own address
FIREWALL_TABLE = "inet vmvc"
# "table" then "delete table" makes the whole script replace any earlier version atomically,
# whether one exists or not (nft 1.0.6 has no "destroy")
_FIREWALL_RESET = f"table {FIREWALL_TABLE}\ndelete table {FIREWALL_TABLE}\n"
FIREWALL = _FIREWALL_RESET + f"""table {FIREWALL_TABLE} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{BRIDGE}" ct state established,related accept
    iifname "{BRIDGE}" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{BRIDGE}" oifname != "{BRIDGE}" drop
    oifname "{BRIDGE}" iifname != "{BRIDGE}" drop
  }}
}}
"""


def host_veth_name(container_id: str) -> str:
    """A stable interface name within the 15-character limit (44 bits of a hash)."""
    from _sha256 import sha256

    return f"vmvc{sha256(container_id.encode()).hexdigest()[:11]}"


def _ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def _nft(script: str, missing_ok: bool = False) -> None:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        if missing_ok:  # without nft no table was ever loaded
            return
        raise ContainerError("network: nft not found: bridge mode needs it to fence "
                             f"{BRIDGE} off the host (Debian package nftables)") from exc
    if proc.returncode:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[0]
        raise ContainerError(f"network: nft cannot set table {FIREWALL_TABLE}: {detail}")


def firewall_present() -> bool:
    """Whether the suite's table is loaded (for cleanup; False where nft is missing)."""
    try:
        return subprocess.run(["nft", "list", "table", *FIREWALL_TABLE.split()],
                              capture_output=True, timeout=30, check=False).returncode == 0
    except FileNotFoundError:
        return False


def remove_firewall() -> None:
    _nft(_FIREWALL_RESET, missing_ok=True)


def ensure_bridge() -> None:
    """Create and bring up vmvc0 with the gateway address, once; its firewall first
    (loaded again on every call: atomic, and a bridge left by an older run gets it too)."""
    _nft(FIREWALL)
    with _ipr() as ipr:
        if not ipr.link_lookup(ifname=BRIDGE):
            try:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
            except Exception as exc:  # NetlinkError: a racing creator made it
                if not ipr.link_lookup(ifname=BRIDGE):
                    raise ContainerError(f"network: cannot create bridge {BRIDGE}: {exc}") from exc
        index = ipr.link_lookup(ifname=BRIDGE)[0]
        try:
            if not ipr.get_addr(index=index, address=str(GATEWAY)):
                ipr.addr("add", index=index, address=str(GATEWAY), prefixlen=SUBNET.prefixlen)
            ipr.link("set", index=index, state="up")
        except Exception as exc:  # NetlinkError
            raise ContainerError(f"network: cannot set up bridge {BRIDGE}: {exc}") from exc


def allocate_address(in_use: set[str]) -> str:
    """The lowest free host address of the subnet (callers hold no other lock)."""
    for host in SUBNET.hosts():
        if host != GATEWAY and str(host) not in in_use:
            return str(host)
    raise ContainerError(f"network: no free address left in {SUBNET}")


class AddressLock:
    """Serialises address allocation between concurrent creators."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, ".network.lock")

    def __enter__(self) -> AddressLock:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)


def plug(container_id: str, init_pid: int) -> None:
    """Host side: a veth pair, one end on the bridge, the other as eth0 in the container."""
    host = host_veth_name(container_id)
    with _ipr() as ipr:
        try:
            ipr.link("add", ifname=host, kind="veth",
                     peer={"ifname": "eth0", "net_ns_pid": init_pid})
        except Exception as exc:
            raise ContainerError(f"network: cannot create veth {host}: {exc}") from exc
        index, bridge = ipr.link_lookup(ifname=host), ipr.link_lookup(ifname=BRIDGE)
        if not index or not bridge:
            raise ContainerError(f"network: {host} or the bridge {BRIDGE} vanished")
        try:
            ipr.link("set", index=index[0], master=bridge[0], state="up")
        except Exception as exc:  # NetlinkError
            raise ContainerError(f"network: cannot plug {host} into {BRIDGE}: {exc}") from exc


def configure_inside(address: str) -> None:
    """Container side, in its network namespace: eth0's address and up; no default route."""
    with _ipr() as ipr:
        index = ipr.link_lookup(ifname="eth0")
        if not index:
            raise ContainerError("network: eth0 did not arrive in the container")
        try:
            ipr.addr("add", index=index[0], address=address, prefixlen=SUBNET.prefixlen)
            ipr.link("set", index=index[0], state="up")
        except Exception as exc:  # NetlinkError
            raise ContainerError(f"network: cannot configure eth0 ({address}): {exc}") from exc


def unplug(container_id: str) -> None:
    """Remove the host end (the pair goes with it); fine if the namespace took it already."""
    with _ipr() as ipr:
        for index in ipr.link_lookup(ifname=host_veth_name(container_id)):
            try:
                ipr.link("del", index=index)
            except Exception:
                continue


def remove_bridge_if_unused(bridged_left: int) -> None:
    """The bridge, then its firewall: only once the bridge is really gone."""
    if bridged_left:
        return
    with _ipr() as ipr:
        for index in ipr.link_lookup(ifname=BRIDGE):
            ipr.link("del", index=index)
        if ipr.link_lookup(ifname=BRIDGE):
            return
    remove_firewall()
