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

import contextlib
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


LEASES = "/run/vmvc-network"  # the bridge's addresses, host-wide (gone with a reboot, as vmvc0)


class Leases:
    """Who holds which address on vmvc0, for the whole host: one file per address (its
    owner, and a path that exists as long as the holder does), taken and returned under
    one lock. Every user of
    the bridge leases here (the runtime's containers of any state root, the harness's
    network namespaces, VMs), so no two share an address, and the bridge (and its firewall)
    goes only once no address is leased."""

    def __init__(self, directory: str = LEASES) -> None:
        self.directory = directory

    def __enter__(self) -> Leases:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(self.directory, ".lock"),
                          os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)

    def held(self) -> dict[str, tuple[str, str]]:
        """Address → (owner, the path that lives as long as it), every lease."""
        found = {}
        for name in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            if not name.startswith("."):
                try:
                    with open(os.path.join(self.directory, name)) as handle:
                        owner, _, alive = handle.read().partition("\n")
                    found[name] = (owner, alive)
                except FileNotFoundError:
                    continue
        return found

    def take(self, owner: str, alive: str) -> str:
        """The bridge up (made if needed) and its lowest free address leased to *owner*,
        whose lease lasts while the path *alive* exists (see :meth:`prune`)."""
        ensure_bridge()
        held = self.held()
        for host in SUBNET.hosts():
            if host != GATEWAY and str(host) not in held:
                with open(os.path.join(self.directory, str(host)), "x") as handle:
                    handle.write(f"{owner}\n{alive}")
                return str(host)
        raise ContainerError(f"network: no free address left in {SUBNET}")

    def give_back(self, address: str) -> None:
        """Return *address* (fine if it was not leased); the last one takes the bridge."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.directory, address))
        if not self.held():
            remove_bridge()

    def prune(self) -> list[str]:
        """Leases whose holder is gone (its path too: a killed run's), returned; the bridge
        goes if none is left."""
        removed = []
        for address, (owner, alive) in self.held().items():
            if not alive or not os.path.lexists(alive):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.directory, address))
                removed.append(f"address lease {address} ({owner})")
        return removed


def lease_address(owner: str, alive: str) -> str:
    with Leases() as leases:
        return leases.take(owner, alive)


def release_address(address: str) -> None:
    with Leases() as leases:
        leases.give_back(address)


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
            attach(ipr, index[0], bridge[0])
        except Exception as exc:  # NetlinkError
            raise ContainerError(f"network: cannot plug {host} into {BRIDGE}: {exc}") from exc


def attach(ipr, index: int, bridge: int) -> None:
    """A host-side link on the bridge as an isolated port, up: the bridge forwards nothing
    between isolated ports, so an instance reaches the host and no other instance (the
    kernel's BR_ISOLATED; libvirt's <port isolated='yes'/> for a VM's tap)."""
    ipr.link("set", index=index, master=bridge)
    ipr.brport("set", index=index, isolated=1)
    ipr.link("set", index=index, state="up")


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


def remove_bridge() -> None:
    """The bridge, then its firewall: only once the bridge is really gone."""
    with _ipr() as ipr:
        for index in ipr.link_lookup(ifname=BRIDGE):
            ipr.link("del", index=index)
        if ipr.link_lookup(ifname=BRIDGE):
            return
    remove_firewall()
